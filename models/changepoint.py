"""Bayesian changepoint model of the grokking epoch of many training runs.

Each run's series ``y[r, t]`` sits at an unsolved "pre" level before an unknown epoch
``tau_r`` and at a solved "post" level from ``tau_r`` on. The two levels have conjugate
priors, truncated to either side of a solved threshold, and are integrated out exactly,
so each run reduces to a table of log marginal likelihoods over tau
(``log_marginal_table``). The sampler draws only the hyperparameters of a hierarchical
prior over tau (``build_model``). The per-run posterior over tau is recovered exactly
from the table after sampling (``fit_changepoints``, ``run_outcomes``).

Column ``j`` of a table means tau = j for j = 0..T-1 (j = 0: the run is at its post level
from the first epoch) and j = T means no transition within the series. In stored
results the same "no transition" value is written as tau = -1.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import arviz as az
import numba
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from scipy import special

from models.diagnostics import HDI_PROB
from models.sampling import STORED_VALUES, Sampler, SamplerSettings

LIKELIHOODS = ("binomial", "gaussian", "poisson")
DIRECTIONS = ("above", "below")
COMPONENTS = ("from_start", "stuck", "lognormal")  # order of the mixture weights
OUTCOMES = ("grokked", "solved_from_start", "not_grokked")
NO_TRANSITION = -1  # tau value of a run that stays at its pre level
MIN_P_TRANSITION = 1e-3  # below this p_transition, the tau summaries of a run are NaN
PPC_MAX_RUNS = 64
PPC_MAX_DRAWS = 200  # chains x draws kept in posterior_predictive

# A region probability that underflows to 0 is taken as the smallest positive double,
# so every table entry stays finite and logsumexp over the table never returns -inf or NaN.
LOG_FLOOR = float(np.log(np.finfo(float).smallest_subnormal))

# Elements per array in the per-draw post-processing, which keeps each array near 40 MB.
_FLOOR = 1e-300  # lower bound of a run's sum over j relative to its peak; see _summed_log_likelihood


@dataclass(frozen=True)
class ChangepointConfig:
    """Likelihood, solved threshold and conjugate level priors of the changepoint model.

    The prior of each level is truncated to its side of ``solved_level``: with direction
    "above", the pre level lies below the threshold and the post level at or above it.
    Gaussian and Poisson series need ``solved_level``. For the binomial, the default is
    ``1 - 0.5 / n_trials`` with direction "above" (every pattern but half of one solved)
    and ``0.5 / n_trials`` with direction "below" (counts of errors). The default Normal-
    inverse-gamma prior suits series of order one, such as log loss. Set it for others.
    """

    likelihood: str = "binomial"  # "binomial" | "gaussian" | "poisson"
    n_trials: int | None = None  # binomial only: trials (patterns scored) per epoch
    solved_level: float | None = None  # threshold between unsolved and solved levels
    solved_direction: str = "above"  # "above" (accuracy) or "below" (loss)
    beta_a: float = 1.0  # binomial: Beta(beta_a, beta_b) prior of each level before truncation
    beta_b: float = 1.0
    gamma_shape: float = 1.0  # poisson: Gamma(shape, rate) prior of each rate before truncation
    gamma_rate: float = 0.1
    nig_mu0: float | None = None  # gaussian: prior mean of each level, solved_level when None
    nig_kappa0: float = 0.01  # prior pseudo-observations of the mean
    nig_alpha0: float = 1.0  # inverse-gamma shape of the noise variance
    nig_beta0: float = 0.01  # inverse-gamma scale of the noise variance

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {self.likelihood!r}. Choose one of {list(LIKELIHOODS)}.")
        if self.solved_direction not in DIRECTIONS:
            raise ValueError(
                f"Unknown solved_direction {self.solved_direction!r}. Use 'above' when the solved level is "
                "high (accuracy) and 'below' when it is low (loss)."
            )
        for name in ("beta_a", "beta_b", "gamma_shape", "gamma_rate", "nig_kappa0", "nig_alpha0", "nig_beta0"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} = {value!r} is invalid. A prior hyperparameter must be finite and > 0.")

        if self.likelihood == "binomial":
            if self.n_trials is None or int(self.n_trials) != self.n_trials or self.n_trials < 1:
                raise ValueError(
                    f"n_trials = {self.n_trials!r} is invalid. The binomial likelihood needs the number of "
                    "trials per epoch as a positive integer, e.g. n_trials=4 for the four XOR patterns."
                )
        elif self.n_trials is not None:
            raise ValueError(f"n_trials = {self.n_trials!r} applies to the binomial likelihood only. Drop it.")

        level = self.solved_level
        if level is None and self.likelihood != "binomial":
            raise ValueError(
                f"solved_level is missing. The {self.likelihood} likelihood needs the threshold between "
                "unsolved and solved levels, in the units of the series."
            )
        if level is not None and not np.isfinite(level):
            raise ValueError(f"solved_level = {level!r} is invalid. Give a finite threshold.")
        if self.likelihood == "binomial" and level is not None and not 0 < level < 1:
            raise ValueError(f"solved_level = {level!r} is invalid. A binomial threshold is a probability in (0, 1).")
        if self.likelihood == "poisson" and level is not None and not level > 0:
            raise ValueError(f"solved_level = {level!r} is invalid. A Poisson threshold is a rate > 0.")

    def threshold(self) -> float:
        """Return ``solved_level``, or the binomial default when it is None."""
        if self.solved_level is not None:
            return float(self.solved_level)
        half_trial = 0.5 / self.n_trials
        return 1.0 - half_trial if self.solved_direction == "above" else half_trial

    def to_json(self) -> str:
        """Return the configuration as JSON text, with the threshold resolved."""
        fields = {**dataclasses.asdict(self), "solved_level": self.threshold()}
        return json.dumps(fields, default=lambda value: value.item())  # numpy scalars to Python numbers


# --- conjugate level priors -------------------------------------------------------------


def _sides(config: ChangepointConfig) -> tuple[str, str]:
    """Return the region ("lower" or "upper" of the threshold) of the pre and the post level."""
    return ("lower", "upper") if config.solved_direction == "above" else ("upper", "lower")


def _posterior_params(config, count, total, total_sq, mu0):
    """Return the conjugate posterior parameters of a level after ``count`` epochs.

    ``total`` and ``total_sq`` are the sum and the sum of squares of the segment. With
    ``count = 0`` the result is the prior. ``mu0`` is the Gaussian prior mean in the
    shifted units of ``total``.
    """
    if config.likelihood == "binomial":
        return config.beta_a + total, config.beta_b + config.n_trials * count - total
    if config.likelihood == "poisson":
        return config.gamma_shape + total, config.gamma_rate + count

    kappa = config.nig_kappa0 + count
    segment_mean = total / np.maximum(count, 1)
    sum_sq_dev = np.maximum(total_sq - total * segment_mean, 0.0)
    mean = (config.nig_kappa0 * mu0 + total) / kappa
    alpha = config.nig_alpha0 + count / 2
    beta = config.nig_beta0 + sum_sq_dev / 2 + config.nig_kappa0 * count * (segment_mean - mu0) ** 2 / (2 * kappa)
    return mean, kappa, alpha, beta


def _log_evidence(config, params, count):
    """Return the log marginal likelihood of a segment under the untruncated prior.

    Terms that depend on the data alone (binomial coefficients, log k!) are left out,
    because ``_log_data_constant`` adds them once per run.
    """
    prior = _posterior_params(config, 0.0, 0.0, 0.0, 0.0)
    if config.likelihood == "binomial":
        a, b = params
        return special.betaln(a, b) - special.betaln(*prior)
    if config.likelihood == "poisson":
        (shape, rate), (shape0, rate0) = params, prior
        return shape0 * np.log(rate0) - special.gammaln(shape0) + special.gammaln(shape) - shape * np.log(rate)

    _, kappa, alpha, beta = params
    _, kappa0, alpha0, beta0 = prior
    return (
        special.gammaln(alpha)
        - special.gammaln(alpha0)
        + alpha0 * np.log(beta0)
        - alpha * np.log(beta)
        + 0.5 * np.log(kappa0 / kappa)
        - 0.5 * count * np.log(2 * np.pi)
    )


def _region_probability(config, params, side, level):
    """Return P(level on ``side`` of the threshold ``level``) under a conjugate distribution."""
    lower = side == "lower"
    if config.likelihood == "binomial":
        a, b = params
        # Uses I_{1-x}(b, a) = 1 - I_x(a, b), because betaincc was 9x slower than betainc in scipy 1.17.
        return special.betainc(a, b, level) if lower else special.betainc(b, a, 1.0 - level)
    if config.likelihood == "poisson":
        shape, rate = params
        return special.gammainc(shape, rate * level) if lower else special.gammaincc(shape, rate * level)

    # The mean of a Normal-inverse-gamma distribution is Student-t with 2 alpha degrees of freedom.
    mean, kappa, alpha, beta = params
    t = (level - mean) / np.sqrt(beta / (alpha * kappa))
    return special.stdtr(2 * alpha, t if lower else -t)


def _log_probability(p):
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(p), LOG_FLOOR)


def _log_segment_evidence(config, count, total, total_sq, mu0, side, level):
    """Return the log marginal likelihood of a segment under the truncated prior.

    It is the untruncated one times P_posterior(region) / P_prior(region).
    """
    params = _posterior_params(config, count, total, total_sq, mu0)
    prior = _posterior_params(config, 0.0, 0.0, 0.0, mu0)
    return (
        _log_evidence(config, params, count)
        + _log_probability(_region_probability(config, params, side, level))
        - _log_probability(_region_probability(config, prior, side, level))
    )


def _log_data_constant(y, config):
    """Return the per-run log-likelihood terms that depend on the data alone."""
    if config.likelihood == "binomial":
        n = config.n_trials
        return (special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)).sum(axis=1)
    if config.likelihood == "poisson":
        return -special.gammaln(y + 1).sum(axis=1)
    return np.zeros(y.shape[0])


def _centred(y, config):
    """Return the series, prior mean and threshold shifted by each run's mean (Gaussian only).

    The Gaussian model is unchanged by a common shift of data, prior mean and threshold,
    and centred data keep the cumulative sums of squares accurate.
    """
    level = config.threshold()
    if config.likelihood != "gaussian":
        return y, 0.0, level
    shift = y.mean(axis=1, keepdims=True)
    mu0 = level if config.nig_mu0 is None else config.nig_mu0
    return y - shift, mu0 - shift, level - shift


def _segment_sums(y):
    """Return count, sum and sum of squares of the pre (t < j) and post (t >= j) segments, j = 0..T."""
    n_runs, n_epochs = y.shape
    zeros = np.zeros((n_runs, 1))
    prefix = np.concatenate([zeros, np.cumsum(y, axis=1)], axis=1)
    prefix_sq = np.concatenate([zeros, np.cumsum(y**2, axis=1)], axis=1)
    count = np.arange(n_epochs + 1, dtype=float)[None, :]
    pre = (count, prefix, prefix_sq)
    post = (n_epochs - count, prefix[:, -1:] - prefix, prefix_sq[:, -1:] - prefix_sq)
    return pre, post


# --- input checks -----------------------------------------------------------------------


def _check_series(y, config: ChangepointConfig) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[0] < 1:
        raise ValueError(f"y has shape {y.shape}. Pass a 2-D array (runs, epochs) with at least one run.")
    if y.shape[1] < 2:
        raise ValueError(f"y has {y.shape[1]} epoch(s), but a changepoint needs a series of at least 2 epochs.")
    bad = ~np.isfinite(y)
    if bad.any():
        run, epoch = np.argwhere(bad)[0]
        raise ValueError(
            f"y contains {int(bad.sum())} NaN or infinite value(s), first at run {run}, epoch {epoch}. "
            "Drop or impute those epochs first."
        )
    if config.likelihood == "gaussian":
        return y

    upper = config.n_trials if config.likelihood == "binomial" else np.inf
    bad = (y != np.round(y)) | (y < 0) | (y > upper)
    if bad.any():
        run, epoch = np.argwhere(bad)[0]
        if config.likelihood == "binomial":
            fix = f"Pass counts of solved trials, integers in 0..{config.n_trials} (accuracy times n_trials)"
        else:
            fix = "Pass counts, integers >= 0"
        value = y[run, epoch]
        raise ValueError(f"y[{run}, {epoch}] = {value:g} is invalid for the {config.likelihood} likelihood. {fix}.")
    return y


def _check_scales(log_n, scale_index, n_runs: int) -> tuple[np.ndarray, np.ndarray]:
    log_n = np.asarray(log_n, dtype=float)
    if log_n.ndim != 1 or log_n.size < 1 or not np.isfinite(log_n).all():
        raise ValueError(f"log_n = {log_n!r} is invalid. Pass a 1-D array of finite log sizes, one per scale.")
    index = np.asarray(scale_index)
    if index.shape != (n_runs,):
        raise ValueError(f"scale_index has shape {index.shape}. Pass one scale index per run, shape ({n_runs},).")
    if index.size and (np.any(index != np.round(index)) or index.min() < 0 or index.max() >= log_n.size):
        raise ValueError(
            f"scale_index has values from {index.min()} to {index.max()}, but each must be an integer in "
            f"0..{log_n.size - 1} that indexes log_n."
        )
    return log_n, index.astype(np.int64)


def _model_coords(n_runs: int, n_scales: int, n_epochs: int, coords: dict | None) -> dict:
    coords = dict(coords or {})
    expected = {"run": n_runs, "scale": n_scales, "epoch": n_epochs}
    for dim, size in expected.items():
        values = coords.setdefault(dim, np.arange(size))
        if len(values) != size:
            raise ValueError(f"coords[{dim!r}] has {len(values)} values, but the data have {size} along {dim!r}.")
    coords["tau_value"] = np.append(np.arange(n_epochs), NO_TRANSITION)
    coords["component"] = list(COMPONENTS)
    return coords


# --- public functions -------------------------------------------------------------------


def log_marginal_table(y: np.ndarray, config: ChangepointConfig) -> np.ndarray:
    """Compute the log marginal likelihood of each run for every changepoint.

    Parameters
    ----------
    y : ndarray, shape (runs, T)
        Series per run: solved counts out of ``n_trials`` (binomial), real values
        (Gaussian) or counts (Poisson).
    config : ChangepointConfig
        Likelihood, threshold and level priors.

    Returns
    -------
    ndarray, shape (runs, T + 1)
        ``table[r, j]`` is log p(y[r] | tau = j) with both levels integrated out over
        their truncated conjugate priors: j < T puts epochs t < j at the pre level and
        t >= j at the post level, and j = T puts every epoch at the pre level. Data-only
        constants (binomial coefficients, log k!) are included, so each entry is the full
        log marginal likelihood. A region probability that underflows counts as
        ``exp(LOG_FLOOR)``, so every entry is finite.

    Raises
    ------
    ValueError
        On a series of the wrong shape, NaN values or counts out of range.
    """
    y = _check_series(y, config)
    shifted, mu0, level = _centred(y, config)
    pre, post = _segment_sums(shifted)
    pre_side, post_side = _sides(config)
    table = _log_segment_evidence(config, *pre, mu0, pre_side, level)
    table += _log_segment_evidence(config, *post, mu0, post_side, level)
    # NOTE: a series that contradicts the threshold for every j (a run that falls back from
    # solved to unsolved, say) has floored region terms at every j, so its row is not exact.
    return table + _log_data_constant(y, config)[:, None]


def _log_ndtr(z):
    """Return log Phi(z) in PyTensor, accurate in both tails and with finite gradients."""
    # Each branch gets only arguments it handles well, so the unused branch never yields NaN gradients.
    negative = pt.minimum(z, 0.0)
    positive = pt.maximum(z, 0.0)
    lower_tail = pt.log(pt.erfcx(-negative / np.sqrt(2)) / 2) - negative**2 / 2
    upper_tail = pt.log1p(-pt.erfc(positive / np.sqrt(2)) / 2)
    return pt.switch(z < 0, lower_tail, upper_tail)


def _log_tau_prior(mu, beta, sigma, weights, x, n_epochs: int):
    """Return log P(j), j = 0..T, of every scale, shape (..., scale, T + 1), as a PyTensor graph.

    ``mu``, ``beta`` and ``sigma`` have shape (...), ``weights`` shape (..., 3) in the order
    of ``COMPONENTS`` and ``x`` (the centred log sizes) shape (scale,).
    """
    mu, beta, sigma, weights, x = (pt.as_tensor_variable(v) for v in (mu, beta, sigma, weights, x))
    log_edges = np.log(np.arange(n_epochs) + 0.5)  # bin edges log(k + 1/2), k = 0..T-1
    centre = pt.shape_padright(mu, 1) + pt.shape_padright(beta, 1) * x  # (..., scale)
    z = (log_edges - centre[..., None]) / pt.shape_padright(sigma, 2)  # (..., scale, T)

    # Mass between two edges: reflect bins above the median so both log-CDFs lie in the lower tail.
    low, high = z[..., :-1], z[..., 1:]
    reflect = low > 0
    a = pt.switch(reflect, -high, low)
    b = pt.switch(reflect, -low, high)
    inner = pm.math.logdiffexp(_log_ndtr(b), _log_ndtr(a))
    lognormal = pt.concatenate([_log_ndtr(z[..., :1]), inner, _log_ndtr(-z[..., -1:])], axis=-1)

    log_weights = pt.log(weights)
    log_start, log_stuck, log_grok = (pt.shape_padright(log_weights[..., k], 2) for k in range(3))
    log_prior = log_grok + lognormal
    first = pm.math.logaddexp(log_start, log_prior[..., :1])
    last = pm.math.logaddexp(log_stuck, log_prior[..., -1:])
    return pt.concatenate([first, log_prior[..., 1:-1], last], axis=-1)


def build_model(table: np.ndarray, log_n: np.ndarray, scale_index: np.ndarray, coords: dict | None = None) -> pm.Model:
    r"""Build the hierarchical prior over tau, with the run-level tables marginalised.

    With ``L[r, j]`` the table, ``s(r)`` the scale of run ``r`` and ``Phi`` the standard
    normal CDF, the model is

    .. math::

        \log p(y \mid \mu, \beta, \sigma, w)
            &= \sum_r \log \sum_{j=0}^{T} \exp\big(L_{rj} + \log P_{s(r)}(j)\big) \\
        P_s(0) &= w_\text{start} + w_\text{lognormal}\,\Phi(z_{s,0}) \\
        P_s(j) &= w_\text{lognormal}\,[\Phi(z_{s,j}) - \Phi(z_{s,j-1})], \quad 0 < j < T \\
        P_s(T) &= w_\text{stuck} + w_\text{lognormal}\,[1 - \Phi(z_{s,T-1})] \\
        z_{s,k} &= (\log(k + 1/2) - \mu - \beta x_s) / \sigma, \quad
            x_s = \log N_s - \operatorname{mean}_s \log N_s \\
        \mu &\sim \mathcal{N}(\log(T/4),\, 1.5), \quad \beta \sim \mathcal{N}(0, 1), \quad
            \sigma \sim \mathcal{N}^+(0, 1) \\
        (w_\text{start}, w_\text{stuck}, w_\text{lognormal}) &\sim \operatorname{Dirichlet}(1, 1, 1)

    so ``log tau`` of a transitioning run is Normal(mu + beta x_s, sigma), rounded to the
    nearest epoch. The weight ``w_start`` (``p_start``) covers runs solved before training
    and ``w_stuck`` (``p_stuck``) covers runs that never transition. Without ``w_start``, a
    run solved from epoch 0 would be pushed to a small tau > 0, because the lognormal has
    almost no mass below 1/2. The log-likelihood enters as one ``pm.Potential``, so the
    only free variables are the hyperparameters. Each gradient evaluation computes about
    two exponentials per table entry, vectorised over runs. Deterministic ``median_tau``
    (dim ``scale``) is exp(mu + beta x_s).

    Parameters
    ----------
    table : ndarray, shape (runs, T + 1)
        Output of ``log_marginal_table``.
    log_n : ndarray, shape (scales,)
        log N per scale, N being the parameter count.
    scale_index : ndarray of int, shape (runs,)
        Scale of each run, an index into ``log_n``.
    coords : dict, optional
        Labels for the dims ``run``, ``scale`` and ``epoch``, 0, 1, ... by default.

    Returns
    -------
    pm.Model
        With ``pm.Data`` containers ``scaled_marginal`` (exp of the table less each row's
        maximum, rows sorted by scale) and ``log_n`` (scale). Coordinate ``tau_value`` is
        0..T-1 then -1 for no transition.
    """
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 3:
        raise ValueError(f"table has shape {table.shape}. Pass the (runs, T + 1) output of log_marginal_table, T >= 2.")
    if not np.isfinite(table).all():
        raise ValueError("table contains NaN or infinite entries. Rebuild it with log_marginal_table.")
    log_n, scale_index = _check_scales(log_n, scale_index, table.shape[0])
    n_epochs = table.shape[1] - 1
    coords = _model_coords(table.shape[0], log_n.size, n_epochs, coords)

    with pm.Model(coords=coords) as model:
        log_n_data = pm.Data("log_n", log_n, dims="scale")
        x = log_n_data - log_n_data.mean()

        mu = pm.Normal("mu", mu=np.log(n_epochs / 4), sigma=1.5)
        beta = pm.Normal("beta", mu=0.0, sigma=1.0)
        sigma = pm.HalfNormal("sigma", sigma=1.0)
        weights = pm.Dirichlet("mixture_weights", a=np.ones(len(COMPONENTS)), dims="component")
        pm.Deterministic("p_start", weights[0])
        pm.Deterministic("p_stuck", weights[1])
        pm.Deterministic("median_tau", pt.exp(mu + beta * x), dims="scale")

        log_prior = _log_tau_prior(mu, beta, sigma, weights, x, n_epochs)
        pm.Potential("run_log_likelihood", _summed_log_likelihood(table, scale_index, log_prior, log_n.size))
    return model


def _summed_log_likelihood(table: np.ndarray, scale_index: np.ndarray, log_prior, n_scales: int):
    r"""Return :math:`\sum_r \log \sum_j \exp(L_{rj} + \log P_{s(r)}(j))` with one matrix product per scale.

    Both terms are shifted by their row maxima, :math:`L_{rj} = m_r + \log A_{rj}` and
    :math:`\log P_s(j) = M_s + \log q_{sj}`, so the sum becomes
    :math:`\sum_r [m_r + M_{s(r)} + \log (A q_{s(r)})_r]`: a matrix-vector product per
    scale, with ``A`` computed once from the data, and no exponential of the table at each
    gradient. A run's row has ``A_{rj} = 1`` at its own peak, so its product is at least
    :math:`q_{s j^*_r}` and underflows only where the prior at the run's likelihood peak is
    over 700 nats below the prior's own peak. There the term is floored at ``log(1e-300)``
    instead of going to minus infinity; elsewhere the sum is exact to rounding.
    """
    order = np.argsort(scale_index, kind="stable")
    peak = table.max(axis=1)
    scaled = pm.Data("scaled_marginal", np.exp(table[order] - peak[order, None]))  # runs sorted by scale
    bounds = np.concatenate([[0], np.cumsum(np.bincount(scale_index, minlength=n_scales))])
    counts = np.diff(bounds)

    prior_peak = pt.max(log_prior, axis=1)  # (scale,)
    relative = pt.exp(log_prior - prior_peak[:, None])  # (scale, T + 1), at most 1
    total = peak.sum() + pt.dot(prior_peak, counts.astype(float))
    for s in np.flatnonzero(counts):
        total += pt.log(pt.dot(scaled[bounds[s] : bounds[s + 1]], relative[s]) + _FLOOR).sum()
    return total


@numba.njit(parallel=True, cache=True)
def _draw_tau(scaled, scale_index, relative, uniform, tau_out, total_out):  # pragma: no cover - compiled
    """For each draw d and run r: total = sum_j A_rj q_dsj and the inverse-CDF draw of j at uniform[d, r]."""
    n_draws = relative.shape[0]
    n_runs, n_values = scaled.shape
    for r in numba.prange(n_runs):
        s = scale_index[r]
        for d in range(n_draws):
            total = 0.0
            for j in range(n_values):
                total += scaled[r, j] * relative[d, s, j]
            total += _FLOOR
            total_out[d, r] = total
            target = uniform[d, r] * total
            running = 0.0
            chosen = n_values - 1  # guards against a running sum that stops just below the target
            for j in range(n_values):
                running += scaled[r, j] * relative[d, s, j]
                if running >= target:
                    chosen = j
                    break
            tau_out[d, r] = chosen


def _tau_posterior(table, x, scale_index, posterior, rng):
    """Return per-run P(j) averaged over draws, one tau index per run and draw, and per-run log-likelihoods.

    For each draw, P(j | y_r) is proportional to A_rj q_s(r)j, the table and the prior over
    tau each shifted by their row maxima as in ``_summed_log_likelihood``. Tau indices are
    int16 (T is at most 32,766), so thousands of runs and draws stay small in memory.
    """
    n_runs, n_values = table.shape
    if n_values > np.iinfo(np.int16).max:
        raise ValueError(f"Series of {n_values - 1} epochs are too long; at most 32,766 are supported.")
    mu, beta, sigma = pt.vector("mu"), pt.vector("beta"), pt.vector("sigma")
    weights, x_var = pt.matrix("weights"), pt.vector("x")
    # FAST_COMPILE runs the graph through numpy and scipy, which is quick for these few large arrays.
    log_prior_fn = pytensor.function(
        [mu, beta, sigma, weights, x_var],
        _log_tau_prior(mu, beta, sigma, weights, x_var, n_values - 1),
        mode="FAST_COMPILE",
    )
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_total = n_chains * n_draws
    scalars = [posterior[name].values.reshape(n_total) for name in ("mu", "beta", "sigma")]
    weight_draws = posterior["mixture_weights"].values.reshape(n_total, len(COMPONENTS))
    log_prior = log_prior_fn(*scalars, weight_draws, x)  # (draw, scale, j)
    prior_peak = log_prior.max(axis=-1)  # (draw, scale)
    relative = np.exp(log_prior - prior_peak[..., None])
    peak = table.max(axis=1)
    scaled = np.exp(table - peak[:, None])
    scale_index = np.ascontiguousarray(scale_index, dtype=np.int64)

    tau_index = np.empty((n_total, n_runs), dtype=np.int16)
    totals = np.empty((n_total, n_runs))
    _draw_tau(scaled, scale_index, np.ascontiguousarray(relative), rng.random((n_total, n_runs)), tau_index, totals)
    log_lik = peak[None, :] + prior_peak[:, scale_index] + np.log(totals)

    # P(j | y_r) averaged over draws is A_rj * sum_d q_dsj / total_dr: one matrix product per scale.
    probability = np.empty((n_runs, n_values))
    for s in np.unique(scale_index):
        rows = np.flatnonzero(scale_index == s)
        probability[rows] = scaled[rows] * ((1.0 / totals[:, rows]).T @ relative[:, s, :])
    probability /= n_total
    shape = (n_chains, n_draws, n_runs)
    return probability, tau_index.reshape(shape), log_lik.reshape(shape)


def _sample_level(config, params, side, level, rng):
    """Draw a level from its conjugate posterior truncated to ``side`` of the threshold.

    Returns the level (the Gaussian mean) and, for the Gaussian, the noise standard deviation.
    """
    lower = side == "lower"
    region = _region_probability(config, params, side, level)
    u = rng.random(np.shape(region)) * region
    if config.likelihood == "binomial":
        a, b = params
        value = special.betaincinv(a, b, u) if lower else 1.0 - special.betaincinv(b, a, u)
        return np.where(region > 0, value, level), None
    if config.likelihood == "poisson":
        shape, rate = params
        value = (special.gammaincinv(shape, u) if lower else special.gammainccinv(shape, u)) / rate
        return np.where(region > 0, value, level), None

    mean, kappa, alpha, beta = params
    scale = np.sqrt(beta / (alpha * kappa))
    t = special.stdtrit(2 * alpha, u)
    mu = np.where(region > 0, mean + scale * t if lower else mean - scale * t, level)
    # Given the mean, the variance is inverse-gamma, because the truncation acts on the mean alone.
    variance = (beta + kappa * (mu - mean) ** 2 / 2) / rng.gamma(alpha + 0.5)
    return mu, np.sqrt(variance)


def _predictive_series(y, config, tau_index, rng):
    """Simulate series given tau, drawing both levels from their truncated posteriors.

    ``tau_index`` has shape (chains, draws, runs) in table columns (T: no transition).
    """
    n_runs, n_epochs = y.shape
    shifted, mu0, level = _centred(y, config)
    pre, post = _segment_sums(shifted)
    pre_side, post_side = _sides(config)
    runs = np.arange(n_runs)

    def at_tau(values):
        # Per-run values (a scalar or shape (runs, 1) or (runs, T + 1)) picked at each draw's tau.
        values = np.broadcast_to(values, (n_runs, n_epochs + 1))
        return values[runs, tau_index]

    mu0, level = at_tau(mu0), at_tau(level)
    pre_params = _posterior_params(config, *(at_tau(v) for v in pre), mu0)
    post_params = _posterior_params(config, *(at_tau(v) for v in post), mu0)
    pre_level, pre_sd = _sample_level(config, pre_params, pre_side, level, rng)
    post_level, post_sd = _sample_level(config, post_params, post_side, level, rng)

    # Compact dtypes keep the stored draws small: the smallest signed integer that fits n_trials,
    # int32 for Poisson counts and float32 for Gaussian values.
    is_post = np.arange(n_epochs) >= tau_index[..., None]
    level_at_epoch = np.where(is_post, post_level[..., None], pre_level[..., None])
    if config.likelihood == "binomial":
        return rng.binomial(config.n_trials, level_at_epoch).astype(np.min_scalar_type(-config.n_trials))
    if config.likelihood == "poisson":
        return rng.poisson(level_at_epoch).astype(np.int32)
    noise_sd = np.where(is_post, post_sd[..., None], pre_sd[..., None])
    shift = y.mean(axis=1)[runs, None]
    simulated = level_at_epoch + shift + noise_sd * rng.standard_normal(level_at_epoch.shape)
    return simulated.astype(np.float32)


def fit_changepoints(
    y: np.ndarray,
    log_n: np.ndarray,
    scale_index: np.ndarray,
    config: ChangepointConfig,
    settings: SamplerSettings,
    coords: dict | None = None,
) -> az.InferenceData:
    """Fit the changepoint model and recover each run's posterior over tau.

    Parameters
    ----------
    y : ndarray, shape (runs, T)
        Series per run, as for ``log_marginal_table``.
    log_n : ndarray, shape (scales,)
        log N per scale.
    scale_index : ndarray of int, shape (runs,)
        Scale of each run, an index into ``log_n``.
    config : ChangepointConfig
        Likelihood, threshold and level priors.
    settings : SamplerSettings
        Draws, chains, seed and backend of ``models.sampling.Sampler``. The seed also
        drives the tau draws and the posterior predictive series.
    coords : dict, optional
        Labels for the dims ``run``, ``scale`` and ``epoch``.

    Returns
    -------
    az.InferenceData
        Groups: ``posterior`` (hyperparameters and ``tau``, an integer per chain, draw and
        run with -1 for no transition), ``sample_stats``, ``observed_data`` (``y``: run,
        epoch), ``constant_data`` (``log_marginal``, ``log_n``, ``scale_index``),
        ``log_likelihood`` (``y``: each run's log p(y_r | hyperparameters), chain, draw,
        run; evenly spaced draws only where runs x draws pass ``STORED_VALUES``),
        ``posterior_predictive`` and ``changepoint`` (``tau_probability``: P(tau)
        of each run averaged over draws, dims run, tau_value). ``posterior_predictive``
        contains simulated series ``y`` for at most 64 runs, evenly spaced over the runs,
        and at most 200 draws in all, evenly spaced within each chain, to keep files
        small for thousands of runs, in compact dtypes (int8 for up to 127 binomial
        trials, int32 for Poisson counts, float32 for Gaussian values). Its dims are
        chain, draw, ppc_run and epoch, and coordinate ``run`` along ``ppc_run`` names
        the run. ``attrs["changepoint_config"]``
        holds the configuration as JSON text.

    Raises
    ------
    ValueError
        On invalid series, scales or coords.
    """
    y = _check_series(y, config)
    log_n, scale_index = _check_scales(log_n, scale_index, y.shape[0])
    table = log_marginal_table(y, config)
    model = build_model(table, log_n, scale_index, coords)
    idata = Sampler(model, settings).sample()

    tau_rng, ppc_rng = np.random.default_rng(settings.seed).spawn(2)
    x = log_n - log_n.mean()
    probability, tau_index, log_lik = _tau_posterior(table, x, scale_index, idata.posterior, tau_rng)
    n_epochs = y.shape[1]
    tau = np.where(tau_index == n_epochs, NO_TRANSITION, tau_index)

    labels = {dim: np.asarray(values) for dim, values in model.coords.items()}
    run_coords = labels["run"]
    chain_draw = {"chain": idata.posterior["chain"].values, "draw": idata.posterior["draw"].values}
    run_dims = {**chain_draw, "run": run_coords}
    idata.posterior["tau"] = xr.DataArray(tau, dims=("chain", "draw", "run"), coords=run_dims)

    n_chains, n_draws = tau.shape[:2]
    ppc_runs = np.unique(np.linspace(0, y.shape[0] - 1, min(PPC_MAX_RUNS, y.shape[0])).round().astype(int))
    kept = max(1, min(n_draws, PPC_MAX_DRAWS // n_chains))
    ppc_draws = np.unique(np.linspace(0, n_draws - 1, kept).round().astype(int))
    simulated = _predictive_series(y[ppc_runs], config, tau_index[:, ppc_draws][..., ppc_runs], ppc_rng)

    # Thousands of runs times thousands of draws: keep evenly spaced draws, as models.sampling.complete does.
    log_lik_per_chain = max(1, min(n_draws, STORED_VALUES // (n_chains * y.shape[0])))
    log_lik_draws = np.unique(np.linspace(0, n_draws - 1, log_lik_per_chain).round().astype(int))

    dataset = xr.Dataset
    epoch_coords = {"run": run_coords, "epoch": labels["epoch"]}
    idata.add_groups(
        observed_data=dataset({"y": (("run", "epoch"), y)}, coords=epoch_coords),
        constant_data=dataset(
            {
                "log_marginal": (("run", "tau_value"), table),
                "log_n": ("scale", log_n),
                "scale_index": ("run", scale_index),
            },
            coords={"run": run_coords, "scale": labels["scale"], "tau_value": labels["tau_value"]},
        ),
        log_likelihood=dataset(
            {"y": (("chain", "draw", "run"), log_lik[:, log_lik_draws])},
            coords={**run_dims, "draw": chain_draw["draw"][log_lik_draws]},
        ),
        posterior_predictive=dataset(
            {"y": (("chain", "draw", "ppc_run", "epoch"), simulated)},
            coords={
                "chain": chain_draw["chain"],
                "draw": chain_draw["draw"][ppc_draws],
                "ppc_run": np.arange(ppc_runs.size),
                "run": ("ppc_run", run_coords[ppc_runs]),
                "epoch": labels["epoch"],
            },
        ),
        changepoint=dataset(
            {"tau_probability": (("run", "tau_value"), probability)},
            coords={"run": run_coords, "tau_value": labels["tau_value"]},
        ),
    )
    idata.attrs["changepoint_config"] = config.to_json()
    return idata


def _shortest_interval(pmf: np.ndarray, mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Return column indices (low, high) of the shortest window of columns holding ``mass`` of each row.

    Rows must sum to 1. One ``searchsorted`` serves all rows: row r's cumulative sums
    are offset by 2 r, so the flattened array stays sorted.
    """
    n_rows, n_cols = pmf.shape
    cumulative = np.concatenate([np.zeros((n_rows, 1)), np.cumsum(pmf, axis=1)], axis=1)
    offset = 2.0 * np.arange(n_rows)[:, None]
    target = cumulative[:, :-1] + mass - 1e-12 + offset  # one per window start
    position = np.searchsorted((cumulative + offset).ravel(), target.ravel()).reshape(n_rows, n_cols)
    end = position - (n_cols + 1) * np.arange(n_rows)[:, None]  # window [low, end - 1] in its row
    width = np.where(end <= n_cols, end - np.arange(n_cols), n_cols + 1)
    low = width.argmin(axis=1)
    return low, end[np.arange(n_rows), low] - 1


def run_outcomes(idata: az.InferenceData) -> xr.Dataset:
    """Summarise each run's posterior over tau.

    Parameters
    ----------
    idata : az.InferenceData
        Output of ``fit_changepoints``.

    Returns
    -------
    xr.Dataset, dim ``run``
        ``p_transition`` (0 < tau < T), ``p_from_start`` (tau = 0), ``p_not_grokked`` (no
        transition), then ``tau_mean``, ``tau_median``, ``tau_hdi_low`` and
        ``tau_hdi_high`` of tau given a transition, and ``outcome``: "grokked",
        "solved_from_start" or "not_grokked", whichever of the three probabilities is
        largest. The HDI at ``HDI_PROB`` is the shortest window of epochs that contains
        at least that mass. The four tau summaries are NaN where p_transition <
        ``MIN_P_TRANSITION``.
    """
    if "changepoint" not in idata.groups():
        raise ValueError("idata has no 'changepoint' group. Pass the output of fit_changepoints.")
    probability = idata["changepoint"]["tau_probability"]
    values = probability.values
    n_epochs = values.shape[1] - 1

    p_from_start = values[:, 0]
    p_transition = values[:, 1:n_epochs].sum(axis=1)
    p_not_grokked = values[:, n_epochs]
    epochs = np.arange(1, n_epochs)
    defined = p_transition >= MIN_P_TRANSITION
    conditional = values[:, 1:n_epochs] / np.where(defined, p_transition, 1.0)[:, None]
    conditional[~defined] = 1.0 / (n_epochs - 1)  # placeholder, masked below

    mean = conditional @ epochs
    median = epochs[(np.cumsum(conditional, axis=1) < 0.5).sum(axis=1).clip(max=n_epochs - 2)]
    low, high = _shortest_interval(conditional, HDI_PROB)
    outcome = np.array(OUTCOMES)[np.argmax(np.stack([p_transition, p_from_start, p_not_grokked]), axis=0)]

    def masked(v):
        return ("run", np.where(defined, v, np.nan))

    return xr.Dataset(
        {
            "p_transition": ("run", p_transition),
            "p_from_start": ("run", p_from_start),
            "p_not_grokked": ("run", p_not_grokked),
            "tau_mean": masked(mean),
            "tau_median": masked(median),
            "tau_hdi_low": masked(epochs[low]),
            "tau_hdi_high": masked(epochs[high]),
            "outcome": ("run", outcome),
        },
        coords={"run": probability["run"].values},
    )
