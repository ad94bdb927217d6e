"""Time-resolved D(t): recovery on simulated data, crossing times and input checks."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from models.diagnostics import HDI_PROB, diagnose
from models.dynamics import build_dynamics_model, crossing_time, fit_dynamics
from models.sampling import SamplerSettings

LOG_N = np.log(4 * np.array([20, 32, 50, 79, 126, 199, 316, 500]) + 1)  # N = 81 .. 2001
BIN_CENTRES = np.arange(-60.0, 61.0, 10.0)
RISE_WIDTH = 15.0  # epochs


def true_d(t: np.ndarray) -> np.ndarray:
    """D rising from 0.9 to 1.2 along a logistic curve centred on aligned time 0."""
    return 0.9 + 0.3 / (1.0 + np.exp(-t / RISE_WIDTH))


# D = 1 where the logistic equals 1/3, at t = -RISE_WIDTH * ln 2.
TRUE_CROSSING = -RISE_WIDTH * np.log(2.0)


def simulate(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = LOG_N - LOG_N.mean()
    intercept = 2.0 + 0.005 * BIN_CENTRES
    se = rng.uniform(0.03, 0.08, (BIN_CENTRES.size, LOG_N.size))
    mean = intercept[:, None] + true_d(BIN_CENTRES)[:, None] * x[None, :] + rng.normal(0.0, se)
    empty = rng.random(mean.shape) < 0.1
    mean[empty] = np.nan
    se[empty] = np.nan
    return mean, se


@pytest.fixture(scope="module")
def fit():
    mean, se = simulate()
    settings = SamplerSettings(draws=1000, tune=1000, chains=2, seed=3)
    return mean, fit_dynamics(mean, se, LOG_N, BIN_CENTRES, settings)


def test_fit_has_all_groups(fit):
    _, idata = fit
    for group in ("posterior", "sample_stats", "observed_data", "posterior_predictive", "log_likelihood"):
        assert group in idata.groups()
    assert idata.posterior["D"].dims == ("chain", "draw", "bin")
    np.testing.assert_array_equal(idata.posterior["bin"].values, BIN_CENTRES)
    assert idata.constant_data["log_n_centred"].dims == ("scale",)


def test_observed_cells_skip_empty(fit):
    mean, idata = fit
    observed = idata.observed_data["mean_log_size"]
    bins, scales = np.nonzero(~np.isnan(mean))

    assert observed.dims == ("cell",)
    assert observed.sizes["cell"] == bins.size
    np.testing.assert_array_equal(observed["cell_bin"].values, BIN_CENTRES[bins])
    np.testing.assert_array_equal(observed["cell_scale"].values, scales)
    np.testing.assert_allclose(observed.values, mean[bins, scales])
    assert idata.log_likelihood["mean_log_size"].dims == ("chain", "draw", "cell")
    assert "cell_bin" in idata.posterior_predictive.coords


def test_attrs_are_plain_text_or_numbers(fit, tmp_path):
    _, idata = fit
    assert idata.attrs["model"] == "dynamics"
    for value in idata.attrs.values():
        assert isinstance(value, (str, int, float))
    idata.to_netcdf(tmp_path / "dynamics.nc")


def test_fit_converges(fit):
    _, idata = fit
    checks = diagnose(idata, ["D", "a", "D_step", "a_step", "sigma"])
    assert checks["divergences"] == 0
    assert checks["rhat_max"] < 1.02
    assert checks["ess_bulk_min"] > 200
    assert checks["ess_tail_min"] > 200


def test_recovers_rising_d(fit):
    _, idata = fit
    hdi = az.hdi(idata.posterior["D"], hdi_prob=HDI_PROB)["D"]
    truth = true_d(BIN_CENTRES)
    inside = (hdi.sel(hdi="lower").values <= truth) & (truth <= hdi.sel(hdi="higher").values)

    assert inside.mean() >= 0.8
    assert float(idata.posterior["D"].isel(bin=0).mean()) < 1.0
    assert float(idata.posterior["D"].isel(bin=-1).mean()) > 1.1


def test_crossing_time_hdi_contains_truth(fit):
    _, idata = fit
    times = crossing_time(idata, BIN_CENTRES).values.ravel()
    crossed = times[~np.isnan(times)]

    assert crossed.size / times.size > 0.99
    low, high = az.hdi(crossed, hdi_prob=HDI_PROB)
    assert low <= TRUE_CROSSING <= high
    assert high - low < 30.0


def posterior_with_d(paths: list[list[float]]) -> az.InferenceData:
    """One chain whose draws are the given D paths."""
    return az.from_dict(posterior={"D": np.asarray(paths, dtype=float)[None]}, dims={"D": ["bin"]})


def test_crossing_time_interpolates():
    idata = posterior_with_d([[0.8, 0.9, 1.1, 1.2], [0.9, 0.95, 0.98, 1.0]])
    times = crossing_time(idata, [0.0, 10.0, 20.0, 30.0]).sel(chain=0).values

    assert times[0] == pytest.approx(15.0)
    assert times[1] == pytest.approx(30.0)  # D reaches the level exactly at the last bin


def test_crossing_time_takes_first_upward_crossing():
    idata = posterior_with_d([[1.2, 0.9, 1.1, 0.8, 1.3], [0.9, 1.1, 0.9, 1.1, 1.2]])
    times = crossing_time(idata, [0.0, 1.0, 2.0, 3.0, 4.0]).sel(chain=0).values

    assert times[0] == pytest.approx(1.5)  # the downward pass from 1.2 is skipped
    assert times[1] == pytest.approx(0.5)


def test_crossing_time_nan_without_crossing():
    idata = posterior_with_d([[0.5, 0.6, 0.7], [1.1, 1.2, 1.3], [1.1, 0.9, 0.8]])
    times = crossing_time(idata, [-1.0, 0.0, 1.0]).sel(chain=0).values

    assert np.isnan(times).all()


def test_crossing_time_other_level():
    idata = posterior_with_d([[0.8, 0.9, 1.1, 1.2]])
    times = crossing_time(idata, [0.0, 10.0, 20.0, 30.0], level=1.15)

    assert times.dims == ("chain", "draw")
    assert float(times.sel(chain=0, draw=0)) == pytest.approx(25.0)


def test_crossing_time_rejects_wrong_bins():
    idata = posterior_with_d([[0.8, 0.9, 1.1]])
    with pytest.raises(ValueError, match="bin_centres has 2 entries"):
        crossing_time(idata, [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        crossing_time(idata, [0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="no posterior variable 'D'"):
        crossing_time(az.from_dict(posterior={"x": np.zeros((1, 2))}), [0.0])


def valid_inputs() -> dict[str, np.ndarray]:
    mean, se = simulate(seed=1)
    return {"mean_log_size": mean, "se_log_size": se, "log_n": LOG_N, "bin_centres": BIN_CENTRES}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("se_log_size", np.ones((3, 8)), r"se_log_size has shape \(3, 8\)"),
        ("mean_log_size", np.ones(8), "must be a 2-D array"),
        ("log_n", LOG_N[:5], "log_n has 5 entries"),
        ("log_n", np.full(8, 5.0), "at least 2 distinct network sizes"),
        ("bin_centres", BIN_CENTRES[::-1], "strictly increasing"),
        ("bin_centres", BIN_CENTRES[:4], "bin_centres has 4 entries"),
    ],
)
def test_build_rejects_bad_inputs(field, value, message):
    inputs = valid_inputs()
    inputs[field] = value
    with pytest.raises(ValueError, match=message):
        build_dynamics_model(**inputs)


def test_build_rejects_nan_mismatch():
    inputs = valid_inputs()
    inputs["se_log_size"] = inputs["se_log_size"].copy()
    observed = np.argwhere(~np.isnan(inputs["mean_log_size"]))[0]
    inputs["se_log_size"][tuple(observed)] = np.nan
    with pytest.raises(ValueError, match="NaN in the same cells"):
        build_dynamics_model(**inputs)


def test_build_rejects_nonpositive_se():
    inputs = valid_inputs()
    inputs["se_log_size"] = np.where(np.isnan(inputs["se_log_size"]), np.nan, 0.0)
    with pytest.raises(ValueError, match="se_log_size must be > 0"):
        build_dynamics_model(**inputs)


def test_build_rejects_single_scale():
    inputs = valid_inputs()
    with pytest.raises(ValueError, match="at least 2 scales"):
        build_dynamics_model(inputs["mean_log_size"][:, :1], inputs["se_log_size"][:, :1], LOG_N[:1], BIN_CENTRES)


def test_build_rejects_one_observed_scale():
    inputs = valid_inputs()
    for name in ("mean_log_size", "se_log_size"):
        inputs[name] = inputs[name].copy()
        inputs[name][:, 1:] = np.nan
        inputs[name][:, 0] = 0.5
    with pytest.raises(ValueError, match="fewer than 2 scales"):
        build_dynamics_model(**inputs)


def test_build_rejects_infinite_mean():
    inputs = valid_inputs()
    inputs["mean_log_size"] = inputs["mean_log_size"].copy()
    inputs["mean_log_size"][0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite values; mark empty cells with NaN"):
        build_dynamics_model(**inputs)


def test_model_uses_observed_cells_only():
    inputs = valid_inputs()
    model = build_dynamics_model(**inputs)
    n_observed = int((~np.isnan(inputs["mean_log_size"])).sum())

    assert model.named_vars_to_dims["mean_log_size"] == ("cell",)
    assert len(model.coords["cell"]) == n_observed
    assert set(model.coords) == {"bin", "scale", "cell"}


@pytest.mark.slow
def test_default_settings_pass_diagnostics():
    """21 bins over +-100 epochs, fitted with the default 4 chains x 1000 draws."""
    rng = np.random.default_rng(7)
    centres = np.arange(-100.0, 101.0, 10.0)
    x = LOG_N - LOG_N.mean()
    se = rng.uniform(0.03, 0.08, (centres.size, LOG_N.size))
    mean = 2.0 + 0.005 * centres[:, None] + true_d(centres)[:, None] * x[None, :] + rng.normal(0.0, se)
    empty = rng.random(mean.shape) < 0.1
    mean[empty] = np.nan
    se[empty] = np.nan

    idata = fit_dynamics(mean, se, LOG_N, centres, SamplerSettings(seed=5))
    checks = diagnose(idata, ["D", "a", "D_step", "a_step", "sigma"])
    assert checks["passed"], checks["failed"]

    times = crossing_time(idata, centres).values.ravel()
    low, high = az.hdi(times[~np.isnan(times)], hdi_prob=HDI_PROB)
    assert low <= TRUE_CROSSING <= high
