"""Tests of the changepoint model: exact tables, recorded outcomes, recovery and input checks."""

from __future__ import annotations

import itertools
import json
import math

import arviz as az
import mpmath
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from pytensor.graph.replace import graph_replace
from scipy import integrate, special, stats

from models.changepoint import (
    NO_TRANSITION,
    ChangepointConfig,
    _log_tau_prior,
    _predictive_series,
    _tau_posterior,
    build_model,
    fit_changepoints,
    log_marginal_table,
    run_outcomes,
)
from models.diagnostics import HDI_PROB, diagnose
from models.sampling import SamplerSettings

# Hidden widths of the default preset. A 2-h-1 MLP has N = 4 h + 1 parameters.
HIDDEN = np.array([20, 32, 50, 79, 126, 199, 316, 500])
LOG_N = np.log(4 * HIDDEN + 1)
LOG_2PI = math.log(2 * math.pi)


def softmax(values):
    return np.exp(values - special.logsumexp(values))


def brute_force_log_marginal(y, log_likelihood, prior_density, regions):
    """Return log p(y | tau = j), j = 0..T, by numerical integration over each truncated prior.

    ``log_likelihood(segment, *level)`` is the log-likelihood of a segment at one level,
    which is a pair (log variance, mean) for the Gaussian. ``prior_density(*level)`` is
    the untruncated prior density. ``regions`` holds, for the pre and then the post
    level, a function that integrates a density over that level's side of the threshold.
    """
    prior_mass = [integrate_over(prior_density) for integrate_over in regions]
    result = []
    for j in range(len(y) + 1):
        total = 0.0
        for segment, integrate_over, mass in zip((y[:j], y[j:]), regions, prior_mass):
            if len(segment) == 0:
                continue

            def joint(*level, segment=segment):
                return np.exp(log_likelihood(segment, *level)) * prior_density(*level)

            total += np.log(integrate_over(joint) / mass)
        result.append(total)
    return np.array(result)


def quad(f, low, high, points=None):
    value, _ = integrate.quad(f, low, high, epsabs=1e-14, epsrel=1e-11, limit=200, points=points)
    return value


@pytest.mark.parametrize("direction", ["above", "below"])
def test_binomial_table_matches_quadrature(direction):
    config = ChangepointConfig(n_trials=4, solved_level=0.8, solved_direction=direction, beta_a=2.0, beta_b=1.5)
    y = np.array([1, 2, 1, 4, 4, 3]) if direction == "above" else np.array([4, 3, 4, 0, 1, 0])
    log_prior = np.log(np.random.default_rng(0).dirichlet(np.ones(len(y) + 1)))

    def log_likelihood(segment, p):
        return stats.binom.logpmf(segment, 4, p).sum()

    def prior_density(p):
        return stats.beta.pdf(p, 2.0, 1.5)

    lower = lambda f: quad(f, 0.0, 0.8)
    upper = lambda f: quad(f, 0.8, 1.0)
    regions = (lower, upper) if direction == "above" else (upper, lower)
    brute = brute_force_log_marginal(y, log_likelihood, prior_density, regions)

    table = log_marginal_table(y[None, :], config)[0]
    np.testing.assert_allclose(table, brute, rtol=0, atol=1e-6)
    np.testing.assert_allclose(softmax(table + log_prior), softmax(brute + log_prior), rtol=0, atol=1e-6)


def test_poisson_table_matches_quadrature():
    config = ChangepointConfig(likelihood="poisson", solved_level=3.0, gamma_shape=2.0, gamma_rate=0.5)
    y = np.array([1, 0, 2, 6, 8, 5])
    log_prior = np.log(np.random.default_rng(1).dirichlet(np.ones(len(y) + 1)))

    def log_likelihood(segment, rate):
        return stats.poisson.logpmf(segment, rate).sum()

    def prior_density(rate):
        return stats.gamma.pdf(rate, 2.0, scale=1 / 0.5)

    regions = (lambda f: quad(f, 0.0, 3.0), lambda f: quad(f, 3.0, np.inf))
    brute = brute_force_log_marginal(y, log_likelihood, prior_density, regions)

    table = log_marginal_table(y[None, :], config)[0]
    np.testing.assert_allclose(table, brute, rtol=0, atol=1e-6)
    np.testing.assert_allclose(softmax(table + log_prior), softmax(brute + log_prior), rtol=0, atol=1e-6)


def test_gaussian_table_matches_quadrature():
    mu0, kappa0, alpha0, beta0, level = 0.6, 0.5, 3.0, 0.5, 0.6
    config = ChangepointConfig(
        likelihood="gaussian",
        solved_level=level,
        solved_direction="below",
        nig_mu0=mu0,
        nig_kappa0=kappa0,
        nig_alpha0=alpha0,
        nig_beta0=beta0,
    )
    y = [1.1, 0.8, 1.3, 0.3, 0.0, 0.4]
    log_prior = np.log(np.random.default_rng(2).dirichlet(np.ones(len(y) + 1)))

    # Integrate over the mean and v = log(variance), with the Jacobian exp(v) in the density.
    # Plain math keeps the roughly 10^5 integrand calls fast.
    def log_likelihood(segment, v, mean):
        squares = sum((value - mean) ** 2 for value in segment)
        return -0.5 * len(segment) * (LOG_2PI + v) - squares / (2 * math.exp(v))

    log_gamma_norm = alpha0 * math.log(beta0) - math.lgamma(alpha0)

    def prior_density(v, mean):
        variance = math.exp(v)
        log_inv_gamma = log_gamma_norm - (alpha0 + 1) * v - beta0 / variance + v
        log_normal = -0.5 * (LOG_2PI + v - math.log(kappa0)) - kappa0 * (mean - mu0) ** 2 / (2 * variance)
        return math.exp(log_inv_gamma + log_normal)

    def over_mean(f, low, high):
        value, _ = integrate.dblquad(f, low, high, -12.0, 6.0, epsabs=0.0, epsrel=1e-9)
        return value

    regions = (lambda f: over_mean(f, level, np.inf), lambda f: over_mean(f, -np.inf, level))
    brute = brute_force_log_marginal(y, log_likelihood, prior_density, regions)

    table = log_marginal_table(np.array([y]), config)[0]
    np.testing.assert_allclose(table, brute, rtol=0, atol=1e-6)
    np.testing.assert_allclose(softmax(table + log_prior), softmax(brute + log_prior), rtol=0, atol=1e-6)


def test_table_rows_are_independent():
    rng = np.random.default_rng(3)
    y = rng.binomial(4, 0.6, size=(5, 40))
    config = ChangepointConfig(n_trials=4)
    table = log_marginal_table(y, config)
    single = np.vstack([log_marginal_table(row[None, :], config) for row in y])
    assert table.shape == (5, 41)
    np.testing.assert_allclose(table, single, rtol=1e-12)


def test_table_stays_finite_when_regions_underflow():
    # A run falling from solved to unsolved contradicts every changepoint, so region probabilities underflow.
    y = np.concatenate([np.full(1500, 1000), np.full(1500, 0)])[None, :]
    table = log_marginal_table(y, ChangepointConfig(n_trials=1000))
    assert np.isfinite(table).all()
    assert np.isfinite(special.logsumexp(table))


def test_binomial_default_threshold():
    assert ChangepointConfig(n_trials=4).threshold() == 0.875
    assert ChangepointConfig(n_trials=4, solved_direction="below").threshold() == 0.125


def log_tau_prior_reference(mu, beta, sigma, weights, x, n_epochs):
    """Return the discretised lognormal mixture, with bin masses from mpmath at 50 digits."""
    mpmath.mp.dps = 50
    edges = [mpmath.log(k + mpmath.mpf(1) / 2) for k in range(n_epochs)]
    result = np.empty((len(x), n_epochs + 1))
    for s, x_s in enumerate(x):
        z = [(edge - mu - beta * x_s) / sigma for edge in edges]
        # Upper-tail bins are differences of survival functions, so no digits cancel.
        inner = [
            mpmath.ncdf(high) - mpmath.ncdf(low) if low < 0 else mpmath.ncdf(-low) - mpmath.ncdf(-high)
            for low, high in itertools.pairwise(z)
        ]
        mass = [mpmath.ncdf(z[0])] + inner + [mpmath.ncdf(-z[-1])]
        prior = [weights[2] * m for m in mass]
        prior[0] += weights[0]
        prior[-1] += weights[1]
        result[s] = [float(mpmath.log(p)) for p in prior]
    return result


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_tau_prior_matches_mpmath(sigma):
    x = LOG_N - LOG_N.mean()
    weights = np.array([0.1, 0.2, 0.7])
    got = _log_tau_prior(3.0, -0.5, sigma, weights, x, 50).eval(mode="FAST_COMPILE")
    expected = log_tau_prior_reference(3.0, -0.5, sigma, weights, x, 50)
    assert got.shape == (8, 51)
    np.testing.assert_allclose(special.logsumexp(got, axis=1), 0.0, atol=1e-10)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_tau_prior_gradient_finite_in_tails():
    mu, sigma = pt.dscalar("mu"), pt.dscalar("sigma")
    log_prior = _log_tau_prior(mu, 0.0, sigma, np.full(3, 1 / 3), np.zeros(2), 300)
    grad = pytensor.function([mu, sigma], pytensor.grad(log_prior.sum(), [mu, sigma]), mode="FAST_COMPILE")
    for point in [(-20.0, 0.01), (30.0, 0.01), (4.0, 1e-3), (4.0, 50.0)]:
        assert np.isfinite(grad(*point)).all(), point


def test_model_potential_matches_numpy():
    rng = np.random.default_rng(4)
    y = rng.binomial(4, 0.7, size=(6, 30))
    table = log_marginal_table(y, ChangepointConfig(n_trials=4))
    scale_index = np.array([0, 0, 1, 1, 2, 2])
    log_n = LOG_N[:3]
    model = build_model(table, log_n, scale_index)

    point = {"mu": 2.5, "beta": 0.3, "sigma": 0.8, "mixture_weights": np.array([0.2, 0.3, 0.5])}
    replacements = {model[name]: pt.as_tensor_variable(np.asarray(value, dtype=float)) for name, value in point.items()}
    potential = graph_replace(model["run_log_likelihood"], replacements).eval(mode="FAST_COMPILE")

    log_prior = log_tau_prior_reference(2.5, 0.3, 0.8, point["mixture_weights"], log_n - log_n.mean(), 30)
    expected = special.logsumexp(table + log_prior[scale_index], axis=1).sum()
    np.testing.assert_allclose(potential, expected, rtol=1e-9)
    assert {v.name for v in model.free_RVs} == {"mu", "beta", "sigma", "mixture_weights"}


def test_tau_posterior_matches_softmax_per_draw():
    rng = np.random.default_rng(5)
    y = rng.binomial(4, 0.7, size=(6, 30))
    table = log_marginal_table(y, ChangepointConfig(n_trials=4))
    scale_index = np.array([0, 0, 1, 1, 2, 2])
    x = LOG_N[:3] - LOG_N[:3].mean()
    draws = {
        "mu": np.array([[2.5, 2.0, 3.1]]),
        "beta": np.array([[0.3, -0.2, 0.0]]),
        "sigma": np.array([[0.8, 0.3, 1.5]]),
        "mixture_weights": np.array([[[0.2, 0.3, 0.5], [0.05, 0.05, 0.9], [0.4, 0.1, 0.5]]]),
    }
    posterior = xr.Dataset({k: (("chain", "draw", *(("component",) if v.ndim == 3 else ())), v) for k, v in draws.items()})
    probability, tau_index, log_lik = _tau_posterior(table, x, scale_index, posterior, np.random.default_rng(0))

    expected_probability = np.zeros_like(table)
    for d in range(3):
        log_prior = log_tau_prior_reference(
            draws["mu"][0, d], draws["beta"][0, d], draws["sigma"][0, d], draws["mixture_weights"][0, d], x, 30
        )
        joint = table + log_prior[scale_index]
        expected_log_lik = special.logsumexp(joint, axis=1)
        np.testing.assert_allclose(log_lik[0, d], expected_log_lik, rtol=1e-9)
        expected_probability += np.exp(joint - expected_log_lik[:, None]) / 3
    np.testing.assert_allclose(probability, expected_probability, atol=1e-12)
    assert tau_index.dtype == np.int16
    assert tau_index.min() >= 0
    assert tau_index.max() <= 30


# --- recorded outcomes of a small fit ---------------------------------------------------

N_EPOCHS = 100
STEP_RUN, STEP_TAU = 0, 40
FLAT_RUN, SOLVED_RUN, STUCK_RUN = 16, 17, 18
FAST_SETTINGS = SamplerSettings(draws=300, tune=300, chains=2, seed=11)


def edge_case_series():
    """Return 16 grokking runs at 4 scales (run 0 steps at epoch 40) and 3 special runs.

    Grokking runs have 4 patterns, pre accuracy 0.5 and post accuracy 1.0, with
    log tau ~ Normal(log 30 - 0.5 x_s, 0.2). Run 16 is flat at 0.5, run 17 is at 1.0 from
    epoch 0 and run 18 is stuck at 0.75.
    """
    rng = np.random.default_rng(5)
    log_n = LOG_N[[0, 2, 4, 6]]
    x = log_n - log_n.mean()
    scale_index = np.repeat(np.arange(4), 4)
    tau = np.round(np.exp(np.log(30) - 0.5 * x[scale_index] + 0.2 * rng.standard_normal(16))).astype(int)
    tau[STEP_RUN] = STEP_TAU
    grokking = rng.binomial(4, np.where(np.arange(N_EPOCHS) < tau[:, None], 0.5, 1.0))
    special_runs = np.stack([np.full(N_EPOCHS, 2), np.full(N_EPOCHS, 4), np.full(N_EPOCHS, 3)])
    y = np.concatenate([grokking, special_runs])
    return y, log_n, np.concatenate([scale_index, [0, 1, 2]]), tau


@pytest.fixture(scope="module")
def edge_fit():
    y, log_n, scale_index, tau = edge_case_series()
    idata = fit_changepoints(y, log_n, scale_index, ChangepointConfig(n_trials=4), FAST_SETTINGS)
    return idata, run_outcomes(idata), tau


def test_flat_run_not_grokked(edge_fit):
    _, outcomes, _ = edge_fit
    assert outcomes["outcome"].values[FLAT_RUN] == "not_grokked"
    assert outcomes["p_not_grokked"].values[FLAT_RUN] > 0.9


def test_run_solved_from_start(edge_fit):
    _, outcomes, _ = edge_fit
    assert outcomes["outcome"].values[SOLVED_RUN] == "solved_from_start"
    assert outcomes["p_from_start"].values[SOLVED_RUN] > 0.9


def test_run_stuck_below_solved_not_grokked(edge_fit):
    _, outcomes, _ = edge_fit
    assert outcomes["outcome"].values[STUCK_RUN] == "not_grokked"
    assert outcomes["p_not_grokked"].values[STUCK_RUN] > 0.9


def test_sharp_step_located(edge_fit):
    idata, outcomes, _ = edge_fit
    probability = idata["changepoint"]["tau_probability"].isel(run=STEP_RUN)
    near = probability.sel(tau_value=slice(STEP_TAU - 2, STEP_TAU + 2)).sum().item()
    assert near > 0.9, f"posterior mass within 2 epochs of {STEP_TAU}: {near:.3f}"
    assert outcomes["tau_hdi_low"].values[STEP_RUN] <= STEP_TAU <= outcomes["tau_hdi_high"].values[STEP_RUN]


def test_grokking_runs_grokked(edge_fit):
    _, outcomes, tau = edge_fit
    assert (outcomes["outcome"].values[:16] == "grokked").all()
    errors = np.abs(outcomes["tau_median"].values[:16] - tau)
    assert errors.max() <= 3, f"median tau errors: {errors}"


def test_outcome_probabilities_sum_to_one(edge_fit):
    _, outcomes, _ = edge_fit
    total = outcomes["p_transition"] + outcomes["p_from_start"] + outcomes["p_not_grokked"]
    np.testing.assert_allclose(total.values, 1.0, atol=1e-9)
    no_transition = outcomes["p_transition"].values < 1e-3
    assert np.isnan(outcomes["tau_mean"].values[no_transition]).all()


def test_fit_groups_and_dims(edge_fit):
    idata, _, _ = edge_fit
    for group in ("posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood"):
        assert group in idata.groups(), group
    assert idata.posterior["tau"].dims == ("chain", "draw", "run")
    assert np.issubdtype(idata.posterior["tau"].dtype, np.integer)
    assert idata.observed_data["y"].dims == ("run", "epoch")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "run")
    assert idata["changepoint"]["tau_probability"].dims == ("run", "tau_value")
    assert json.loads(idata.attrs["changepoint_config"])["solved_level"] == 0.875

    predictive = idata.posterior_predictive["y"]
    assert predictive.dims == ("chain", "draw", "ppc_run", "epoch")
    assert predictive.sizes["chain"] * predictive.sizes["draw"] <= 200
    assert predictive["run"].values.tolist() == list(range(19))
    assert predictive.dtype == np.int8
    assert predictive.min() >= 0
    assert predictive.max() <= 4


def test_tau_draws_follow_probabilities(edge_fit):
    idata, _, _ = edge_fit
    tau = idata.posterior["tau"].values
    probability = idata["changepoint"]["tau_probability"]
    assert (tau[..., FLAT_RUN] == NO_TRANSITION).mean() == pytest.approx(
        probability.sel(tau_value=NO_TRANSITION).values[FLAT_RUN], abs=0.05
    )
    assert (tau[..., SOLVED_RUN] == 0).mean() > 0.9


def test_predictive_series_follow_outcomes(edge_fit):
    idata, _, _ = edge_fit
    predictive = idata.posterior_predictive["y"].swap_dims(ppc_run="run")
    assert (predictive.sel(run=SOLVED_RUN) == 4).mean() > 0.9
    assert predictive.sel(run=STEP_RUN, epoch=slice(STEP_TAU + 3, None)).mean() > 3.9
    assert predictive.sel(run=FLAT_RUN).mean() == pytest.approx(2.0, abs=0.3)


def step_series(rng, likelihood, taus, n_epochs):
    """Return one series per tau: log-loss-like Gaussian steps or Poisson counts stepping from rate 2 to 20."""
    after = np.arange(n_epochs) >= np.asarray(taus)[:, None]
    if likelihood == "gaussian":
        return np.where(after, -4.0, -0.35) + 0.1 * rng.standard_normal(after.shape)
    return rng.poisson(np.where(after, 20.0, 2.0))


STEP_CONFIGS = {
    "gaussian": ChangepointConfig(likelihood="gaussian", solved_level=-1.5, solved_direction="below"),
    "poisson": ChangepointConfig(likelihood="poisson", solved_level=8.0),
}
STEP_LEVELS = {"gaussian": (-0.35, -4.0), "poisson": (2.0, 20.0)}


@pytest.mark.parametrize("likelihood", ["gaussian", "poisson"])
def test_predictive_series_levels_at_tau(likelihood):
    rng = np.random.default_rng(7)
    taus = np.array([20, 30, 40])
    y = step_series(rng, likelihood, taus, 60)
    tau_index = np.broadcast_to(taus, (2, 50, 3))
    simulated = _predictive_series(y, STEP_CONFIGS[likelihood], tau_index, rng)
    assert simulated.shape == (2, 50, 3, 60)

    pre_level, post_level = STEP_LEVELS[likelihood]
    after = np.arange(60) >= taus[:, None]
    pre_values = simulated[..., ~after]
    post_values = simulated[..., after]
    assert pre_values.mean() == pytest.approx(pre_level, rel=0.1)
    assert post_values.mean() == pytest.approx(post_level, rel=0.1)
    if likelihood == "gaussian":
        assert post_values.std() == pytest.approx(0.1, rel=0.3)


# --- real-sized fits --------------------------------------------------------------------


def simulate_hierarchy(rng, mu, beta, sigma, p_stuck, runs_per_scale, n_epochs):
    """Return binomial series (4 trials), scale indices, the drawn log tau and which runs are stuck."""
    scale_index = np.repeat(np.arange(len(LOG_N)), runs_per_scale)
    x = LOG_N - LOG_N.mean()
    log_tau = mu + beta * x[scale_index] + sigma * rng.standard_normal(scale_index.size)
    tau = np.round(np.exp(log_tau)).astype(int)
    stuck = rng.random(scale_index.size) < p_stuck
    tau[stuck] = n_epochs  # stuck runs never transition
    pre = rng.uniform(0.3, 0.7, size=(scale_index.size, 1))
    post = rng.uniform(0.95, 1.0, size=(scale_index.size, 1))
    y = rng.binomial(4, np.where(np.arange(n_epochs) < tau[:, None], pre, post))
    return y, scale_index, log_tau, stuck


@pytest.mark.slow
def test_hyperparameters_recovered():
    # Each truth misses its HDI with probability 0.06, so some seeds fail one of the four checks by
    # chance. The message prints the sample statistics, which show whether a miss is such a chance miss.
    truth = {"mu": np.log(60.0), "beta": -0.6, "sigma": 0.3, "p_stuck": 0.1}
    y, scale_index, log_tau, stuck = simulate_hierarchy(
        np.random.default_rng(8), **truth, runs_per_scale=16, n_epochs=300
    )
    idata = fit_changepoints(y, LOG_N, scale_index, ChangepointConfig(n_trials=4), SamplerSettings(seed=1))

    checks = diagnose(idata, var_names=list(truth))
    assert checks["passed"], checks["failed"]

    # Values of this sample: least squares of log tau on x over the runs that transition.
    x = (LOG_N - LOG_N.mean())[scale_index][~stuck]
    slope, intercept = np.polyfit(x, log_tau[~stuck], 1)
    residual_sd = np.std(log_tau[~stuck] - intercept - slope * x)
    sample = {"mu": intercept, "beta": slope, "sigma": residual_sd, "p_stuck": stuck.mean()}

    for name, value in truth.items():
        draws = idata.posterior[name]
        low, high = az.hdi(draws, hdi_prob=HDI_PROB)[name].values
        message = f"{name}: truth {value:.3f}, sample {sample[name]:.3f}, {HDI_PROB:.0%} HDI [{low:.3f}, {high:.3f}]"
        assert low <= value <= high, message
        assert abs(draws.mean() - sample[name]) < draws.std(), message


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["gaussian", "poisson"])
def test_fit_locates_steps(likelihood):
    rng = np.random.default_rng(9)
    taus = np.array([12, 15, 18, 25, 30, 35, 40, 55, 60, 70, 80, 90])
    y = step_series(rng, likelihood, taus, 120)
    scale_index = np.repeat(np.arange(3), 4)[::-1]  # larger scales step earlier
    idata = fit_changepoints(y, LOG_N[[0, 3, 6]], scale_index, STEP_CONFIGS[likelihood], FAST_SETTINGS)
    outcomes = run_outcomes(idata)

    assert (outcomes["outcome"].values == "grokked").all()
    np.testing.assert_array_equal(outcomes["tau_median"].values, taus)
    assert idata.posterior_predictive["y"].sizes["ppc_run"] == 12


@pytest.mark.slow
def test_fit_deterministic_for_seed():
    # Slow only because each fit compiles the model with numba (15-30 s on 2 cores).
    y, log_n, scale_index, _ = edge_case_series()
    config = ChangepointConfig(n_trials=4)
    first = fit_changepoints(y, log_n, scale_index, config, FAST_SETTINGS)
    second = fit_changepoints(y, log_n, scale_index, config, FAST_SETTINGS)
    for name in ("mu", "beta", "sigma", "mixture_weights", "tau"):
        np.testing.assert_array_equal(first.posterior[name].values, second.posterior[name].values, err_msg=name)
    np.testing.assert_array_equal(first.posterior_predictive["y"].values, second.posterior_predictive["y"].values)


# --- input checks -----------------------------------------------------------------------

BINOMIAL = ChangepointConfig(n_trials=4)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.zeros(10), r"shape \(10,\)"),
        (np.zeros((3, 1)), "at least 2 epochs"),
        (np.array([[1.0, np.nan, 2.0]]), "NaN or infinite"),
        (np.array([[1, 5, 2]]), r"y\[0, 1\] = 5 is invalid.*0\.\.4"),
        (np.array([[1, -1, 2]]), r"y\[0, 1\] = -1 is invalid"),
        (np.array([[0.5, 0.75, 1.0]]), r"y\[0, 0\] = 0.5.*accuracy times n_trials"),
    ],
)
def test_table_rejects_invalid_series(y, match):
    with pytest.raises(ValueError, match=match):
        log_marginal_table(y, BINOMIAL)


def test_table_rejects_negative_poisson_counts():
    config = ChangepointConfig(likelihood="poisson", solved_level=2.0)
    with pytest.raises(ValueError, match=r"y\[0, 2\] = -3 is invalid for the poisson.*integers >= 0"):
        log_marginal_table(np.array([[1, 2, -3]]), config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "n_trials = None is invalid"),
        ({"n_trials": 0}, "n_trials = 0 is invalid"),
        ({"n_trials": 4, "likelihood": "student"}, "Unknown likelihood 'student'"),
        ({"n_trials": 4, "solved_direction": "up"}, "Unknown solved_direction 'up'"),
        ({"n_trials": 4, "solved_level": 1.5}, r"solved_level = 1.5 is invalid.*\(0, 1\)"),
        ({"n_trials": 4, "beta_a": -1.0}, "beta_a = -1.0 is invalid"),
        ({"likelihood": "gaussian"}, "solved_level is missing"),
        ({"likelihood": "poisson", "solved_level": -1.0}, "rate > 0"),
        ({"likelihood": "poisson", "solved_level": 1.0, "n_trials": 4}, "binomial likelihood only"),
    ],
)
def test_config_rejects_invalid_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChangepointConfig(**kwargs)


def test_build_model_rejects_invalid_scales():
    table = log_marginal_table(np.full((3, 5), 2), BINOMIAL)
    with pytest.raises(ValueError, match=r"scale_index has values from 0 to 3.*0\.\.1"):
        build_model(table, LOG_N[:2], np.array([0, 1, 3]))
    with pytest.raises(ValueError, match=r"scale_index has shape \(2,\)"):
        build_model(table, LOG_N[:2], np.array([0, 1]))
    with pytest.raises(ValueError, match="log_n"):
        build_model(table, np.array([np.nan, 1.0]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"coords\['run'\] has 2 values"):
        build_model(table, LOG_N[:2], np.array([0, 1, 1]), coords={"run": ["a", "b"]})
    with pytest.raises(ValueError, match="table has shape"):
        build_model(table[:, :2], LOG_N[:2], np.array([0, 1, 1]))


def test_fit_rejects_invalid_inputs_before_sampling():
    y = np.full((3, 5), 2)
    with pytest.raises(ValueError, match="scale_index has values"):
        fit_changepoints(y, LOG_N[:2], np.array([0, 1, 2]), BINOMIAL, FAST_SETTINGS)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_changepoints(np.where(y == 2, np.nan, y), LOG_N[:2], np.array([0, 1, 1]), BINOMIAL, FAST_SETTINGS)
