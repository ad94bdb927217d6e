"""The command line, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_gen import open_records
from data_gen.config import ConfigError, load_config, load_preset, with_overrides

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_gen", "--no-progress", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_smoke_preset_end_to_end(tmp_path):
    out = tmp_path / "smoke.nc"
    result = run_cli("--preset", "smoke", "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert f"end: wrote {out}" in result.stderr
    assert "fraction grokked per scale" in result.stderr
    tree = open_records(out)
    assert tree["training"].sizes["scale"] == 3
    assert load_config(ROOT / "configs" / "smoke.toml") == load_preset("smoke")
    assert 'name = "smoke"' in tree.attrs["config_toml"]


def test_overrides_reach_the_file(tmp_path):
    out = tmp_path / "small.nc"
    result = run_cli(
        "--preset",
        "smoke",
        "--scales",
        "6,9",
        "--seeds",
        "2",
        "--epochs",
        "12",
        "--snapshot-every",
        "3",
        "--topologies",
        "erdos_renyi",
        "--threshold",
        "1.5",
        "--alpha",
        "0.5",
        "--out",
        str(out),
    )

    assert result.returncode == 0, result.stderr
    tree = open_records(out)
    assert tree["training"]["h"].values.tolist() == [6, 9]
    assert tree["avalanches"].sizes["snapshot"] == 2 * 2 * 4 * 2
    assert "alpha = 0.5" in tree.attrs["config_toml"]
    assert "threshold = 1.5" in tree.attrs["config_toml"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--alpha", "1.0"), "probe.alpha = 1.0 must be in (0, 1)"),
        (("--threshold", "0"), "probe.threshold = 0.0 must be > 0"),
        (("--scales", "20,x"), "not a comma-separated list of integers"),
        (("--topologies", "torus"), "unknown topology"),
        (("--workers", "0"), "--workers 0 is invalid"),
        (("--config", "missing.toml"), "missing.toml not found"),
    ],
)
def test_bad_arguments_rejected(args, message, tmp_path):
    result = run_cli("--preset", "smoke", "--out", str(tmp_path / "x.nc"), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "x.nc").exists()


def test_help_lists_units_and_defaults():
    result = subprocess.run([sys.executable, "-m", "data_gen", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # undo argparse line wrapping
    for phrase in ("--preset", "--resume", "--scheduler", "(default: default)", "in neurons", "(default: 16)"):
        assert phrase in text, phrase


def test_config_file_unknown_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training]\nepochs = 10\nlearning_rat = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rat'\] in \[training\]"):
        load_config(path)


def test_single_scale_config_accepted():
    config = with_overrides(load_preset("smoke"), training__hidden=(20,))
    assert config.training.hidden == (20,)


@pytest.mark.slow
def test_default_preset_end_to_end(tmp_path):
    out = tmp_path / "default.nc"
    result = run_cli("--out", str(out))

    assert result.returncode == 0, result.stderr
    tree = open_records(out)
    training = tree["training"]
    assert training["h"].values.tolist() == [20, 32, 50, 79, 126, 199, 316, 500]
    assert training.sizes["seed"] >= 16

    grok = training["grok_epoch"].values
    assert (grok >= 0).all(), f"runs that never solved XOR: {int((grok < 0).sum())}"
    median = np.median(grok, axis=1)
    assert grok.min() >= 5, f"grok epochs span {grok.min()}..{grok.max()}"
    assert grok.max() <= 200, f"grok epochs span {grok.min()}..{grok.max()}"
    assert median[0] > 2 * median[-1], f"median grok epoch per scale: {median}"

    avalanches = tree["avalanches"]
    topologies = np.unique(avalanches["topology"].values[avalanches["source"].values == 1])
    assert topologies.tolist() == [0, 1, 2, 3, 4]
    assert int((avalanches["valid"] == 0).sum()) == 0
