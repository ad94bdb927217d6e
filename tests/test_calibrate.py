"""Tests of python -m analysis.calibrate: input guards, the simulators and a quick SBC run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pymc as pm
import pytest

from analysis import calibrate
from analysis.sbc_models import EPOCHS, N_PATTERNS, ChangepointCase, FssCase
from models.changepoint import build_model, log_marginal_table
from models.sampling import SamplerSettings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replicates", "0"], "--replicates 0 is invalid"),
        (["--replicates", "1"], "--replicates 1 is invalid"),
        (["--seed", "-1"], "--seed -1 is invalid"),
        (["--models", "gini"], "unknown model 'gini'"),
        (["--models", ","], "names no model"),
    ],
)
def test_cli_rejects_bad_options(argv, message, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    assert calibrate.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in caplog.text
    assert not (tmp_path / "out").exists()


def test_cli_rejects_file_as_out(tmp_path, caplog):
    target = tmp_path / "calibration.json"
    target.write_text("{}")
    assert calibrate.main(["--out", str(target)]) == 2
    assert "is a file" in caplog.text
    assert target.read_text() == "{}"


def test_cli_help_names_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        calibrate.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--quick", "--out", "--replicates", "--models", "--seed"):
        assert option in text


def test_parse_models_drops_repeats():
    assert calibrate.parse_models("fss, changepoint,fss") == ["fss", "changepoint"]


def test_changepoint_simulation_is_reproducible():
    case = ChangepointCase(SamplerSettings(), runs_per_scale=2)
    first = case.simulate(3, seed=7)
    second = case.simulate(3, seed=7)
    for a, b in zip(first, second):
        assert a.truth == b.truth
        assert np.array_equal(a.data, b.data)
    assert first[0].truth != first[1].truth


def test_changepoint_simulation_follows_tau():
    case = ChangepointCase(SamplerSettings(), runs_per_scale=2)
    replicates = case.simulate(5, seed=3)
    assert set(replicates[0].truth) == set(case.parameters())
    for replicate in replicates:
        y = replicate.data
        assert y.shape == (16, EPOCHS)
        assert y.min() >= 0
        assert y.max() <= N_PATTERNS
        weights = [replicate.truth[f"mixture_weights[{c}]"] for c in ("from_start", "stuck", "lognormal")]
        assert np.isclose(sum(weights), 1.0)
        for name, run in case.tau_runs.items():
            tau = int(replicate.truth[name])
            assert 0 <= tau <= EPOCHS
            # The post level is at least 0.875 and the pre level below it, so post means are higher.
            if 20 <= tau <= EPOCHS - 20:
                assert y[run, tau:].mean() > y[run, :tau].mean()


def test_changepoint_refit_data_matches_fresh_model():
    """Swapping the pm.Data values of a compiled model gives the gradient of a model built on the new data."""
    case = ChangepointCase(SamplerSettings(), runs_per_scale=1)
    first, second = case.simulate(2, seed=11)
    config = case.config
    model = build_model(log_marginal_table(first.data, config), case.log_n, case.scale_index)
    fresh = build_model(log_marginal_table(second.data, config), case.log_n, case.scale_index)
    point = fresh.initial_point()
    expected = fresh.compile_dlogp()(point)
    with model:
        pm.set_data({variable.name: variable.get_value() for variable in fresh.data_vars})
    assert np.allclose(model.compile_dlogp()(point), expected, rtol=1e-9, atol=1e-9)


def test_fss_simulation_is_reproducible_and_shaped():
    case = FssCase(SamplerSettings(), runs_per_scale=2)
    first = case.simulate(2, seed=5)
    second = case.simulate(2, seed=5)
    assert set(first[0].truth) == set(case.parameters())
    assert first[0].truth == second[0].truth
    groups = first[0].data
    assert np.array_equal(groups.mean, second[0].data.mean)
    assert groups.mean.size == 2 * 8 * 3
    assert (groups.count >= 2).all()
    assert (groups.sum_sq > 0).all()
    shape = case.data_shape()
    assert shape["snapshots"] == 2 * 8 * 2 * (EPOCHS // 2)


@pytest.mark.slow
def test_quick_run_covers_within_tolerance(tmp_path):
    """The quick mode (20 replicates per model) keeps the headline parameters' 94% coverage within tolerance.

    Headline parameters are every changepoint parameter (they give tau) and D per phase.
    With 20 replicates, each of the 28 parameters falls outside its 99% binomial interval
    now and then by chance, so the scatter parameters of the scaling model are printed
    but only the full run (100 replicates, docs/calibration.md) judges them.
    """
    out = tmp_path / "calibration"
    assert calibrate.main(["--quick", "--out", str(out)]) == 0
    content = json.loads((out / "calibration.json").read_text())
    assert content["complete"]
    lines, outside = [], []
    for model, entry in content["models"].items():
        assert (out / entry["figure"]).is_file()
        for parameter, result in entry["parameters"].items():
            low, high = result["tolerance_94"]
            lines.append(
                f"{model} {parameter}: 94% coverage {result['coverage_94']:.2f} (tolerance {low:.2f} to {high:.2f}), "
                f"50% coverage {result['coverage_50']:.2f}, rank p {result['rank_uniformity_p']:.3f}"
            )
            headline = model == "changepoint" or parameter.startswith("D[")
            if headline and not result["within_tolerance_94"]:
                outside.append(f"{model} {parameter}")
    print("\n".join(lines))
    assert set(content["models"]) == {"changepoint", "fss"}
    assert not outside, "headline parameters outside the 94% tolerance: " + ", ".join(outside) + "\n" + "\n".join(lines)
