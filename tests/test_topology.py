"""Topology invariance of D: recovery of equal and unequal exponents, band probabilities, input checks."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from models.diagnostics import HDI_PROB, diagnose
from models.sampling import SamplerSettings
from models.topology import band_probabilities, build_topology_model, fit_topology

LOG_N = np.log(4 * np.array([20, 32, 50, 79, 126, 199, 316, 500]) + 1)  # N = 81 .. 2001
TOPOLOGIES = ["barabasi_albert", "ring_lattice", "erdos_renyi", "grid", "complete"]
SETTINGS = SamplerSettings(draws=1000, tune=1000, chains=2, seed=1)
POSTERIOR_VARS = ["D0", "D_sd", "D", "a", "sigma"]


def simulate(true_d: list[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = LOG_N - LOG_N.mean()
    intercept = rng.normal(1.5, 0.3, len(true_d))
    se = rng.uniform(0.01, 0.03, (len(true_d), LOG_N.size))
    mean = intercept[:, None] + np.asarray(true_d)[:, None] * x[None, :] + rng.normal(0.0, se)
    return mean, se


@pytest.fixture(scope="module")
def equal_fit():
    mean, se = simulate([1.0] * 5, seed=1)
    return fit_topology(mean, se, LOG_N, TOPOLOGIES, SETTINGS)


@pytest.fixture(scope="module")
def outlier_fit():
    mean, se = simulate([1.0, 1.0, 1.0, 1.0, 1.3], seed=1)
    return fit_topology(mean, se, LOG_N, TOPOLOGIES, SETTINGS)


def test_fit_has_all_groups(equal_fit):
    for group in ("posterior", "sample_stats", "observed_data", "posterior_predictive", "log_likelihood"):
        assert group in equal_fit.groups()
    assert equal_fit.posterior["D"].dims == ("chain", "draw", "topology")
    assert list(equal_fit.posterior["topology"].values) == TOPOLOGIES
    assert equal_fit.observed_data["mean_log_size"].dims == ("topology", "scale")
    assert equal_fit.attrs["model"] == "topology"


def test_equal_fit_converges(equal_fit):
    checks = diagnose(equal_fit, POSTERIOR_VARS)
    # NOTE: the data pin each D to about +-0.005, so the posterior of the non-centred D_z
    # narrows as D_sd grows, and a few of the 2000 draws diverge there.
    assert checks["divergences"] <= 5
    assert checks["rhat_max"] < 1.02
    assert checks["ess_bulk_min"] > 200


def test_equal_d_inside_hdi(equal_fit):
    hdi = az.hdi(equal_fit.posterior, var_names=["D", "D0"], hdi_prob=HDI_PROB)
    for topology in TOPOLOGIES:
        low, high = hdi["D"].sel(topology=topology).values
        assert low <= 1.0 <= high, topology
    low, high = hdi["D0"].values
    assert low <= 1.0 <= high


def test_equal_band_probabilities_high(equal_fit):
    probabilities = band_probabilities(equal_fit)

    assert probabilities["D"].dims == ("topology",)
    assert (probabilities["D"].values > 0.95).all()
    assert float(probabilities["D0"]) > 0.9


def test_outlier_fit_converges(outlier_fit):
    checks = diagnose(outlier_fit, POSTERIOR_VARS)
    assert checks["divergences"] == 0
    assert checks["rhat_max"] < 1.03
    assert checks["ess_bulk_min"] > 150


def test_outlier_band_probability_low(outlier_fit):
    probabilities = band_probabilities(outlier_fit)["D"]

    assert float(probabilities.sel(topology="complete")) < 0.01
    for topology in TOPOLOGIES[:4]:
        assert float(probabilities.sel(topology=topology)) > 0.9, topology


def test_outlier_d_located(outlier_fit):
    outlier = outlier_fit.posterior["D"].sel(topology="complete")
    low, high = az.hdi(outlier, hdi_prob=HDI_PROB)["D"].values

    assert 1.25 < low
    assert high < 1.35
    assert float(outlier_fit.posterior["D_sd"].mean()) > 0.05


def posterior_with(d: np.ndarray, d0: np.ndarray) -> az.InferenceData:
    return az.from_dict(
        posterior={"D": d[None], "D0": d0[None]},
        coords={"topology": ["a", "b"]},
        dims={"D": ["topology"]},
    )


def test_band_probabilities_count_draws():
    d = np.array([[1.0, 0.9], [1.02, 1.05], [0.96, 1.2], [1.2, 1.0]])
    idata = posterior_with(d, np.array([1.0, 1.0, 0.94, 1.06]))
    probabilities = band_probabilities(idata)

    np.testing.assert_allclose(probabilities["D"].values, [0.75, 0.5])  # the band is closed
    assert float(probabilities["D0"]) == pytest.approx(0.5)
    assert probabilities.attrs["band_low"] == 0.95


def test_band_probabilities_custom_band():
    d = np.array([[1.0, 0.9], [1.02, 1.05]])
    probabilities = band_probabilities(posterior_with(d, np.array([1.0, 1.1])), band=(0.85, 0.95))

    np.testing.assert_allclose(probabilities["D"].values, [0.0, 0.5])
    assert float(probabilities["D0"]) == 0.0


@pytest.mark.parametrize("band", [(1.05, 0.95), (0.9, np.nan), (1.0,), (0.9, 1.0, 1.1)])
def test_band_probabilities_rejects_bad_band(band):
    idata = posterior_with(np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="band must be a finite interval"):
        band_probabilities(idata, band=band)


def test_band_probabilities_rejects_other_fit():
    idata = az.from_dict(posterior={"D": np.ones((1, 3))})
    with pytest.raises(ValueError, match="no posterior variables 'D' and 'D0'"):
        band_probabilities(idata)


def valid_inputs() -> dict[str, object]:
    mean, se = simulate([1.0] * 5, seed=2)
    return {"mean_log_size": mean, "se_log_size": se, "log_n": LOG_N, "topologies": TOPOLOGIES}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("se_log_size", np.ones((5, 7)), r"se_log_size has shape \(5, 7\)"),
        ("mean_log_size", np.ones(8), "must be a 2-D array"),
        ("log_n", LOG_N[:3], "log_n has 3 entries"),
        ("topologies", TOPOLOGIES[:4], "topologies has 4 names"),
        ("topologies", ["grid"] * 5, "topologies must be distinct"),
        ("se_log_size", np.zeros((5, 8)), "se_log_size must be > 0"),
    ],
)
def test_build_rejects_bad_inputs(field, value, message):
    inputs = valid_inputs()
    inputs[field] = value
    with pytest.raises(ValueError, match=message):
        build_topology_model(**inputs)


def test_build_rejects_nan():
    inputs = valid_inputs()
    inputs["mean_log_size"][2, 3] = np.nan
    with pytest.raises(ValueError, match=r"mean_log_size must be finite.*index \(2, 3\)"):
        build_topology_model(**inputs)


def test_build_rejects_single_scale():
    inputs = valid_inputs()
    with pytest.raises(ValueError, match="at least 2 scales"):
        build_topology_model(inputs["mean_log_size"][:, :1], inputs["se_log_size"][:, :1], LOG_N[:1], TOPOLOGIES)


@pytest.mark.slow
def test_outlier_default_settings_pass_diagnostics():
    mean, se = simulate([1.0, 1.0, 1.0, 1.0, 1.3], seed=4)
    idata = fit_topology(mean, se, LOG_N, TOPOLOGIES, SamplerSettings(seed=5))
    checks = diagnose(idata, POSTERIOR_VARS)

    assert checks["passed"], checks["failed"]
    assert float(band_probabilities(idata)["D"].sel(topology="complete")) < 0.01
