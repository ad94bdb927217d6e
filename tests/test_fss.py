"""The phase scaling model on simulated data with a known exponent."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from analysis.phases import split_phases, typical_size_groups
from analysis.pipeline import comparisons
from analysis.simulate import Truth, simulate_records
from models.diagnostics import HDI_PROB
from models.fss import GroupData, build_model, group_statistics, model_data, residual_basis
from models.sampling import Sampler, SamplerSettings

FAST = SamplerSettings(draws=400, tune=400, chains=2, seed=1)


def assert_in_hdi(idata, name, phase, truth):
    draws = idata.posterior[name].sel(phase=phase).values.ravel()
    low, high = az.hdi(draws, hdi_prob=HDI_PROB)
    assert low <= truth <= high, f"{name}[{phase}] truth {truth} outside 94% HDI [{low:.4f}, {high:.4f}]"


def test_group_statistics_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    group = rng.integers(0, 4, size=50)
    count, mean, sum_sq = group_statistics(values, group, 5)
    for g in range(4):
        members = values[group == g]
        assert count[g] == len(members)
        np.testing.assert_allclose(mean[g], members.mean())
        np.testing.assert_allclose(sum_sq[g], ((members - members.mean()) ** 2).sum())
    assert count[4] == 0
    assert np.isnan(mean[4])


def test_residual_basis_orthogonal_to_trend():
    log_n = np.log([81.0, 201, 505, 1265, 2001])
    scale = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    phase = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    basis = residual_basis(log_n, scale, phase, 2)
    x = log_n - log_n.mean()

    assert basis.shape == (2, 5, 3)
    np.testing.assert_allclose(basis[0].T @ np.ones(5), 0, atol=1e-12)
    np.testing.assert_allclose(basis[0].T @ x, 0, atol=1e-12)
    np.testing.assert_allclose(basis[0].T @ basis[0], np.eye(3), atol=1e-12)
    # Phase 1 has three scales: one residual direction, zero on scales 3 and 4.
    assert np.abs(basis[1][:, 1:]).max() == 0
    assert np.abs(basis[1][3:]).max() == 0


def test_single_scale_phase_rejected():
    with pytest.raises(ValueError, match="only one network size"):
        GroupData(np.ones(3), np.ones(3), np.zeros(3), np.zeros(3, int), np.zeros(3, int), np.log([81.0, 2001]))


def test_recovers_phase_exponents():
    data, truth, tau = simulate_records(seed=3, n_seeds=8, epochs=120)
    groups = typical_size_groups(data, split_phases(data, tau))
    idata = Sampler(build_model(groups), FAST).sample()

    for phase, value in truth.D.items():
        assert_in_hdi(idata, "D", phase, value)
    result = comparisons(idata, ["pre", "post", "synthetic"])
    assert result["p_post_gt_pre"] > 0.99
    assert result["p_pre_lt_1"] > 0.99


def test_equal_exponents_not_separated():
    truth = Truth(D={"pre": 1.0, "post": 1.0, "synthetic": 1.0})
    data, _, tau = simulate_records(seed=4, n_seeds=8, epochs=120, truth=truth)
    groups = typical_size_groups(data, split_phases(data, tau))
    idata = Sampler(build_model(groups), FAST).sample()

    p = comparisons(idata, ["pre", "post", "synthetic"])["p_post_gt_pre"]
    assert 0.1 <= p <= 0.9, f"P(D_post > D_pre) = {p:.3f} with equal true exponents"


def test_cell_sums_match_pointwise_density():
    data, _, tau = simulate_records(seed=6, n_seeds=4, epochs=120)
    groups = typical_size_groups(data, split_phases(data, tau))
    summed, pointwise = build_model(groups), build_model(groups, pointwise=True)
    assert [v.name for v in summed.free_RVs] == [v.name for v in pointwise.free_RVs]

    rng = np.random.default_rng(0)
    start = summed.initial_point()
    points = [{name: value + rng.normal(0, 0.3, np.shape(value)) for name, value in start.items()} for _ in range(3)]
    logps = {name: model.compile_logp() for name, model in (("summed", summed), ("pointwise", pointwise))}
    grads = {name: model.compile_dlogp() for name, model in (("summed", summed), ("pointwise", pointwise))}
    offsets = [logps["pointwise"](point) - logps["summed"](point) for point in points]
    # The forms differ only by terms without parameters, so the offset is the same at every point.
    np.testing.assert_allclose(offsets, offsets[0], rtol=0, atol=1e-6)
    for point in points:
        np.testing.assert_allclose(grads["summed"](point), grads["pointwise"](point), rtol=1e-9, atol=1e-8)


def test_refit_on_new_data_without_rebuild():
    data, truth, tau = simulate_records(seed=5, n_seeds=6, epochs=120)
    groups = typical_size_groups(data, split_phases(data, tau))
    sampler = Sampler(build_model(groups), FAST)
    full = sampler.sample()

    without_largest = groups.subset(groups.scale != len(groups.log_n) - 1)
    refit = sampler.sample(data=model_data(without_largest))
    for phase, value in truth.D.items():
        estimate = float(refit.posterior["D"].sel(phase=phase).mean())
        full_estimate = float(full.posterior["D"].sel(phase=phase).mean())
        assert abs(estimate - value) < 0.05, f"D[{phase}] refit mean {estimate:.3f}, truth {value}"
        assert estimate != full_estimate, f"D[{phase}]: the refit returned the full fit"


@pytest.mark.slow
def test_pipeline_recovers_truth(tmp_path):
    from analysis.pipeline import FitOptions, Stages
    from analysis.results import load_idata

    data, truth, tau = simulate_records(seed=11, n_seeds=16, epochs=200)
    options = FitOptions(sampler=SamplerSettings(seed=2), leave_one_scale_out=False)
    summary = Stages(data, options, tmp_path, {}).run()

    for phase, value in truth.D.items():
        estimate = summary["D"][phase]
        assert estimate["hdi_low"] <= value <= estimate["hdi_high"], (
            f"D[{phase}] truth {value} outside 94% HDI [{estimate['hdi_low']:.4f}, {estimate['hdi_high']:.4f}]"
        )
    assert summary["comparisons"]["p_post_gt_pre"] > 0.99
    assert summary["changepoints"]["n_grokked"] == data.n_runs

    changepoint = load_idata(tmp_path / "changepoint.nc")
    slope = changepoint.posterior["beta"].values.ravel()
    low, high = az.hdi(slope, hdi_prob=HDI_PROB)
    assert low <= truth.log_tau_slope <= high, f"log tau slope {truth.log_tau_slope} outside [{low:.3f}, {high:.3f}]"
    for name in ("changepoint", "fss_D_plugin", "fss_gamma", "fss_D_max"):
        assert summary["diagnostics"][name]["passed"], (name, summary["diagnostics"][name]["failed"])
