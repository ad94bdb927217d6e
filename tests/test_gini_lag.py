"""Gini peak lag: the per-run lag helper, recovery of the pooled mean lag and input checks."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from models.diagnostics import HDI_PROB, diagnose
from models.gini_lag import build_gini_lag_model, fit_gini_lag, gini_peak_lag
from models.sampling import SamplerSettings

N_SCALES = 8
RUNS_PER_SCALE = 16
TRUE_MU = 12.0  # epochs
TRUE_SCALE_SD = 4.0
TRUE_SIGMA = 8.0
POSTERIOR_VARS = ["mu", "mu_sd", "mu_scale", "sigma", "nu"]


def simulate(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu_scale = TRUE_MU + rng.normal(0.0, TRUE_SCALE_SD, N_SCALES)
    scale_index = np.repeat(np.arange(N_SCALES), RUNS_PER_SCALE)
    lag = mu_scale[scale_index] + TRUE_SIGMA * rng.standard_t(5, scale_index.size)
    return lag, scale_index, mu_scale


@pytest.fixture(scope="module")
def fit():
    lag, scale_index, mu_scale = simulate()
    idata = fit_gini_lag(lag, scale_index, N_SCALES, SamplerSettings(draws=1000, tune=1000, chains=4, seed=0))
    return idata, mu_scale


def test_fit_has_all_groups(fit):
    idata, _ = fit
    for group in ("posterior", "sample_stats", "observed_data", "posterior_predictive", "log_likelihood"):
        assert group in idata.groups()
    assert idata.posterior["mu_scale"].dims == ("chain", "draw", "scale")
    assert idata.observed_data["lag"].dims == ("run",)
    np.testing.assert_array_equal(idata.observed_data["run_scale"].values, simulate()[1])
    assert idata.attrs["runs_per_scale"] == "[16, 16, 16, 16, 16, 16, 16, 16]"


def test_fit_converges(fit):
    idata, _ = fit
    checks = diagnose(idata, POSTERIOR_VARS)
    assert checks["divergences"] == 0
    assert checks["rhat_max"] < 1.01
    assert checks["ess_bulk_min"] > 300


def test_mean_lag_inside_hdi(fit):
    idata, _ = fit
    low, high = az.hdi(idata.posterior["mu"], hdi_prob=HDI_PROB)["mu"].values

    assert low <= TRUE_MU <= high
    assert high - low < 15.0


def test_scale_means_inside_hdi(fit):
    idata, mu_scale = fit
    hdi = az.hdi(idata.posterior["mu_scale"], hdi_prob=HDI_PROB)["mu_scale"]
    inside = (hdi.sel(hdi="lower").values <= mu_scale) & (mu_scale <= hdi.sel(hdi="higher").values)

    assert inside.mean() >= 0.75


def test_peak_lag_finds_maximum_in_window():
    gini = np.zeros((3, 20))
    gini[0, 12] = 1.0  # inside the window around tau = 10
    gini[1, 2] = 5.0  # outside the window, so the in-window peak at epoch 9 wins
    gini[1, 9] = 1.0
    gini[2, 7] = 1.0
    lags = gini_peak_lag(gini, np.array([10.0, 10.0, 9.5]), window=3)

    np.testing.assert_allclose(lags, [2.0, -1.0, -2.5])


def test_peak_lag_nan_cases():
    gini = np.random.default_rng(0).random((4, 10))
    gini[3, :] = np.nan
    lags = gini_peak_lag(gini, np.array([np.nan, 30.0, 4.0, 4.0]), window=2)

    assert np.isnan(lags[0])  # no tau
    assert np.isnan(lags[1])  # window beyond the last epoch
    assert np.isfinite(lags[2])
    assert np.isnan(lags[3])  # only NaN values in the window


def test_peak_lag_window_edges_and_ties():
    gini = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 3.0]])
    tau = np.array([2.0])

    assert gini_peak_lag(gini, tau, window=1)[0] == -1.0  # tie at epochs 1 and 3: the earliest wins
    assert gini_peak_lag(gini, tau, window=0)[0] == 0.0
    assert gini_peak_lag(gini, tau, window=3)[0] == 3.0  # the window edge is included


def test_peak_lag_uses_epoch_values():
    gini = np.array([[0.9, 0.2, 0.4, 0.3]])  # epoch 0 lies outside the window
    lags = gini_peak_lag(gini, np.array([5.0]), window=3, epochs=[0, 2, 4, 6])

    assert lags[0] == pytest.approx(4.0 - 5.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gini": np.zeros(5)}, "gini must be a 2-D array"),
        ({"tau": np.zeros(3)}, "tau has 3 entries but gini has 2 run rows"),
        ({"window": -1}, "window must be a finite number"),
        ({"window": np.nan}, "window must be a finite number"),
        ({"epochs": [0, 1, 2]}, "epochs has 3 entries"),
        ({"epochs": [0, 2, 1, 3]}, "strictly increasing"),
        ({"tau": np.array([np.inf, 1.0])}, "tau contains infinite values"),
    ],
)
def test_peak_lag_rejects_bad_inputs(kwargs, message):
    arguments = {"gini": np.zeros((2, 4)), "tau": np.zeros(2), "window": 2}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        gini_peak_lag(**arguments)


@pytest.mark.parametrize(
    ("lag", "scale_index", "n_scales", "message"),
    [
        ([1.0], [0], 2, "lag has 1 run"),
        ([1.0, np.nan], [0, 1], 2, "lag must be finite"),
        ([1.0, 2.0], [0], 2, "one entry per run"),
        ([1.0, 2.0], [0, 2], 2, r"scale_index must lie in 0 \.\. 1"),
        ([1.0, 2.0], [0, -1], 2, r"scale_index must lie in 0 \.\. 1"),
        ([1.0, 2.0], [0.0, 0.5], 2, "must contain integers"),
        ([1.0, 2.0], [0, 0], 0, "n_scales must be a positive integer"),
        ([1.0, 2.0], [0, 0], 1.5, "n_scales must be a positive integer"),
    ],
)
def test_build_rejects_bad_inputs(lag, scale_index, n_scales, message):
    with pytest.raises(ValueError, match=message):
        build_gini_lag_model(lag, scale_index, n_scales)


def test_build_accepts_float_indices_empty_scales():
    model = build_gini_lag_model([1.0, 2.0, 3.0], np.array([0.0, 0.0, 2.0]), 4)

    assert len(model.coords["scale"]) == 4
    assert len(model.coords["run"]) == 3
    assert model.named_vars_to_dims["lag"] == ("run",)


@pytest.mark.slow
def test_default_settings_pass_diagnostics():
    lag, scale_index, _ = simulate(seed=3)
    idata = fit_gini_lag(lag, scale_index, N_SCALES, SamplerSettings(seed=5))
    checks = diagnose(idata, POSTERIOR_VARS)

    assert checks["passed"], checks["failed"]
    low, high = az.hdi(idata.posterior["mu"], hdi_prob=HDI_PROB)["mu"].values
    assert low <= TRUE_MU <= high
