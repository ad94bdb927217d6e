"""fit_phases end to end, as a user runs it, and its input validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from analysis.fit_phases import build_parser, options_from
from analysis.inputs import InputError, load_input
from analysis.pipeline import FitOptions
from analysis.results import load_idata

ROOT = Path(__file__).resolve().parent.parent
S_KEYS = {"mean", "sd", "hdi_low", "hdi_high"}


def fit_phases(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis.fit_phases", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )


@pytest.fixture(scope="module")
def smoke_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "smoke.nc"
    result = subprocess.run(
        [sys.executable, "-m", "data_gen", "--preset", "smoke", "--out", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return out


def assert_is_summary(value, where: str) -> None:
    assert isinstance(value, dict), where
    assert set(value) >= S_KEYS, where
    assert value["hdi_low"] <= value["mean"] <= value["hdi_high"], where


def test_smoke_end_to_end(smoke_file, tmp_path):
    out = tmp_path / "report"
    result = fit_phases(str(smoke_file), "--out", str(out), "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out / 'summary.json'}" in result.stderr
    assert f"end: report at {out / 'summary.html'}" in result.stderr

    summary = json.loads((out / "summary.json").read_text())
    for estimator in ("D", "D_max", "gamma"):
        for phase in ("pre", "post", "synthetic"):
            assert_is_summary(summary[estimator][phase], f"{estimator}.{phase}")
    comparisons = summary["comparisons"]
    for key in ("p_post_gt_pre", "p_pre_lt_1", "p_post_gt_1"):
        assert 0.0 <= comparisons[key] <= 1.0, key
    assert set(comparisons["synthetic_rope"]) == {"low", "high", "p_inside"}
    assert set(summary["crossing"]) >= S_KEYS
    changepoints = summary["changepoints"]
    assert changepoints["n_runs"] == 12
    assert len(changepoints["per_scale"]) == 3
    for phase in ("pre", "post", "synthetic"):
        assert summary["bootstrap"][phase]["low"] <= summary["bootstrap"][phase]["high"], phase
    assert summary["loo"]["preferred"] in ("phase_specific", "single_D")
    for name, check in summary["diagnostics"].items():
        assert set(check) >= {"rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "ebfmi_min", "passed"}, name
    assert len(summary["leave_one_scale_out"]) == 3
    gini_lag = summary["gini_lag"]
    assert gini_lag["window"] == 60
    assert 0 <= gini_lag["n_at_window_edge"] <= gini_lag["n_runs"]

    idata = load_idata(out / "fss_D_plugin.nc")
    for group in ("posterior", "sample_stats", "observed_data", "posterior_predictive", "log_likelihood"):
        assert group in idata.groups(), group
    assert idata.posterior.attrs["input_sha256"] == summary["input"]["sha256"]
    assert isinstance(idata.posterior.attrs["package_versions"], dict)


def test_external_single_phase(tmp_path):
    rng = np.random.default_rng(0)
    n_params = np.repeat([100, 300, 1000, 3000], 200)
    sizes = np.exp(1.0 + 0.8 * np.log(n_params) + rng.normal(0, 0.2, len(n_params)))
    path = tmp_path / "external.nc"
    xr.Dataset({"size": ("snapshot", np.rint(sizes)), "n_params": ("snapshot", n_params)}).to_netcdf(
        path, group="avalanches"
    )

    out = tmp_path / "report"
    result = fit_phases(str(path), "--out", str(out), "--quick", "--no-leave-one-scale-out")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phases"] == ["all"]
    assert_is_summary(summary["D"]["all"], "D.all")
    assert summary["D"]["pre"] is None
    assert abs(summary["D"]["all"]["mean"] - 0.8) < 0.1


def test_missing_input_rejected(tmp_path):
    result = fit_phases(str(tmp_path / "absent.nc"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "absent.nc: file not found" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"size": ("snapshot", [1.0, 2.0])}, "variable /avalanches/n_params is missing"),
        ({"size": ("snapshot", [1.0, 2.0]), "n_params": ("snapshot", [81, 81])}, "n_params has a single value"),
        ({"size": ("snapshot", [1.0, np.nan]), "n_params": ("snapshot", [81, 201])}, "size has 1 NaN"),
        (
            {"size": ("snapshot", [1.0, 2.0]), "n_params": ("snapshot", [81, 201]), "phase": ("snapshot", ["pre", "x"])},
            "unknown labels",
        ),
    ],
)
def test_bad_external_file_named(tmp_path, variables, message):
    path = tmp_path / "bad.nc"
    xr.Dataset(variables).to_netcdf(path, group="avalanches")
    with pytest.raises(InputError, match=message):
        load_input(path)


def test_corrupt_input_named(tmp_path):
    path = tmp_path / "corrupt.nc"
    path.write_bytes(b"not netcdf")
    with pytest.raises(InputError, match=r"corrupt\.nc: not a readable NetCDF-4 file"):
        load_input(path)


def test_gini_window_option_reaches_fit():
    args = build_parser().parse_args(["data.nc", "--gini-window", "90"])
    assert options_from(args).gini_window == 90
    default = build_parser().parse_args(["data.nc"])
    assert options_from(default).gini_window == FitOptions.gini_window


def test_gini_window_below_one_rejected(tmp_path):
    result = fit_phases(str(tmp_path / "absent.nc"), "--gini-window", "0", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "--gini-window 0 is invalid" in result.stderr
    assert not (tmp_path / "r").exists()
