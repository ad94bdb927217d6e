"""Prior draws, simulated data and refits of the changepoint and phase-scaling models for SBC.

Each calibration case builds its production model once on the data shape of the
default preset. It draws every replicate's parameters from that model with
``pm.sample_prior_predictive``, so the priors are read from the model code, and it
simulates data from the model's own likelihood. The model is compiled once, and each
replicate is refitted with the production sampler by swapping the ``pm.Data`` values, as
the pipeline does for its refits. A fit returns the posterior draws of every calibrated
scalar parameter as (chain, draw) arrays, and the convergence checks of
``models.diagnostics``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import pytensor

from analysis.pipeline import _sampled  # the variables whose convergence the pipeline checks
from analysis.simulate import Truth

# The helpers with a leading underscore are the changepoint model's own tau prior, level
# priors and tau posterior. Importing them keeps the simulation and the model identical.
from models.changepoint import (
    COMPONENTS,
    ChangepointConfig,
    _log_tau_prior,
    _posterior_params,
    _sample_level,
    _sides,
    _tau_posterior,
    log_marginal_table,
)
from models.changepoint import build_model as build_changepoint_model
from models.diagnostics import diagnose
from models.fss import PHASES, GroupData, model_data
from models.fss import build_model as build_fss_model
from models.sampling import Sampler, SamplerSettings

HIDDEN = (20, 32, 50, 79, 126, 199, 316, 500)  # hidden widths h of the default preset; N = 4h + 1
EPOCHS = 300  # epochs per run in the default preset
SNAPSHOT_EVERY = 2  # epochs between gradient snapshots in the default preset
N_PATTERNS = 4  # XOR patterns scored per epoch: the binomial trials of the changepoint series
TAU_SCALES = (0, 3, 7)  # scales whose first run's tau is calibrated: N = 81, 317 and 2001
FSS_VARIABLES = ("D", "intercept", "sigma", "tau_run", "omega", "kappa", "nu_minus_one")


@dataclass
class Replicate:
    """One simulated data set with the parameter values that generated it."""

    index: int
    truth: dict[str, float]  # calibrated scalar parameter -> true value
    data: object  # what the case's ``fit`` takes


@dataclass
class Fit:
    """Posterior draws of each calibrated parameter, shape (chain, draw), and the convergence checks."""

    draws: dict[str, np.ndarray]
    diagnostics: dict[str, object]


def _prior_draws(model: pm.Model, n: int, seed: int, var_names: list[str] | None = None) -> az.InferenceData:
    with warnings.catch_warnings():
        # The changepoint model's likelihood is a Potential, which prior draws rightly ignore.
        warnings.filterwarnings("ignore", message="The effect of Potentials", category=UserWarning)
        return pm.sample_prior_predictive(draws=n, model=model, var_names=var_names, random_seed=seed)


def _scalar(prior: az.InferenceData, name: str, index: int) -> np.ndarray:
    """Return prior draw ``index`` of a variable, without the leading chain and draw dims."""
    return prior.prior[name].values[0, index]


def _log_n() -> np.ndarray:
    return np.log(4.0 * np.asarray(HIDDEN) + 1.0)


class ChangepointCase:
    """Calibration of the changepoint model: hyperparameters and the tau of three runs.

    A replicate draws mu, beta, sigma and the mixture weights from the model's priors.
    Then each run gets a grokking epoch from the implied prior over tau
    (``_log_tau_prior``), a pre and a post accuracy level from their truncated Beta priors
    (``_sample_level`` given no data), and binomial accuracy counts out of 4 patterns per
    epoch.
    """

    name = "changepoint"

    def __init__(self, settings: SamplerSettings, runs_per_scale: int = 4):
        self.settings = settings
        self.runs_per_scale = runs_per_scale
        self.config = ChangepointConfig(likelihood="binomial", n_trials=N_PATTERNS)
        self.log_n = _log_n()
        self.scale_index = np.repeat(np.arange(len(HIDDEN)), runs_per_scale)
        self.tau_runs = {f"tau[N={4 * HIDDEN[s] + 1}]": s * runs_per_scale for s in TAU_SCALES}
        n_runs = self.scale_index.size
        self.model = build_changepoint_model(np.zeros((n_runs, EPOCHS + 1)), self.log_n, self.scale_index)
        self._sampler: Sampler | None = None

    def data_shape(self) -> dict:
        return {
            "scales": len(HIDDEN),
            "hidden": list(HIDDEN),
            "n_params": [4 * h + 1 for h in HIDDEN],
            "runs_per_scale": self.runs_per_scale,
            "epochs": EPOCHS,
            "series": f"training accuracy counts out of {N_PATTERNS} patterns (binomial)",
            "tau_runs": {name: int(run) for name, run in self.tau_runs.items()},
        }

    def parameters(self) -> list[str]:
        return ["mu", "beta", "sigma", *(f"mixture_weights[{c}]" for c in COMPONENTS), *self.tau_runs]

    def simulate(self, n: int, seed: int) -> list[Replicate]:
        """Draw ``n`` replicates: hyperparameters, then each run's tau, levels and series."""
        prior = _prior_draws(self.model, n, seed, ["mu", "beta", "sigma", "mixture_weights"])
        hyper = {name: prior.prior[name].values[0] for name in ("mu", "beta", "sigma", "mixture_weights")}
        x = self.log_n - self.log_n.mean()
        log_prior = pytensor.function(
            [],
            _log_tau_prior(hyper["mu"], hyper["beta"], hyper["sigma"], hyper["mixture_weights"], x, EPOCHS),
            mode="FAST_COMPILE",
        )()  # (replicate, scale, T + 1): log P(tau = j), j = T meaning no transition

        rng = np.random.default_rng([seed, 1])
        n_runs = self.scale_index.size
        prior_params = tuple(np.full(n_runs, value) for value in _posterior_params(self.config, 0.0, 0.0, 0.0, 0.0))
        pre_side, post_side = _sides(self.config)
        threshold = self.config.threshold()
        replicates = []
        for i in range(n):
            # 1. tau per run by inverse CDF over the columns of the run's scale.
            probability = np.exp(log_prior[i][self.scale_index])
            cumulative = np.cumsum(probability, axis=1)
            uniform = rng.random((n_runs, 1)) * cumulative[:, -1:]
            tau = np.minimum((cumulative < uniform).sum(axis=1), EPOCHS)

            # 2. Levels from their truncated conjugate priors, then the counts.
            pre_level, _ = _sample_level(self.config, prior_params, pre_side, threshold, rng)
            post_level, _ = _sample_level(self.config, prior_params, post_side, threshold, rng)
            after = np.arange(EPOCHS)[None, :] >= tau[:, None]
            y = rng.binomial(N_PATTERNS, np.where(after, post_level[:, None], pre_level[:, None]))

            truth = {name: float(_scalar(prior, name, i)) for name in ("mu", "beta", "sigma")}
            for k, component in enumerate(COMPONENTS):
                truth[f"mixture_weights[{component}]"] = float(_scalar(prior, "mixture_weights", i)[k])
            for name, run in self.tau_runs.items():
                truth[name] = float(tau[run])
            replicates.append(Replicate(i, truth, y))
        return replicates

    def fit(self, replicate: Replicate, seed: int) -> Fit:
        """Fit as ``models.changepoint.fit_changepoints`` does, reusing one compiled model."""
        if self._sampler is None:
            self._sampler = Sampler(self.model, self.settings)
        table = log_marginal_table(replicate.data, self.config)
        # A model built on this table, never compiled, gives the values of its pm.Data containers.
        rebuilt = build_changepoint_model(table, self.log_n, self.scale_index)
        data = {variable.name: variable.get_value() for variable in rebuilt.data_vars}
        idata = self._sampler.sample(data=data, seed=seed)
        # The pipeline checks every posterior variable of this model (tau is added later).
        diagnostics = diagnose(idata, var_names=list(idata.posterior.data_vars))

        tau_rng = np.random.default_rng(seed).spawn(2)[0]
        x = self.log_n - self.log_n.mean()
        _, tau_index, _ = _tau_posterior(table, x, self.scale_index, idata.posterior, tau_rng)

        posterior = idata.posterior
        draws = {name: posterior[name].values for name in ("mu", "beta", "sigma")}
        for k, component in enumerate(COMPONENTS):
            draws[f"mixture_weights[{component}]"] = posterior["mixture_weights"].values[..., k]
        for name, run in self.tau_runs.items():
            draws[name] = tau_index[..., run]  # column index: T means no transition
        return Fit(draws, diagnostics)


class FssCase:
    """Calibration of the headline phase-scaling model of D: every scalar of ``FSS_VARIABLES`` per phase.

    The design is fixed across replicates: each run's pre and post snapshot counts come
    from one grokking epoch per run, drawn once as ``analysis.simulate`` draws it, and the
    synthetic phase has as many snapshots as the run. A replicate draws every parameter
    from the model's priors and the group means and within-run sums of squares from its
    likelihood (``group`` and ``within``).
    """

    name = "fss"

    def __init__(self, settings: SamplerSettings, runs_per_scale: int = 16, design_seed: int = 0):
        self.settings = settings
        self.runs_per_scale = runs_per_scale
        log_n = _log_n()
        x = log_n - log_n.mean()
        run_scale = np.repeat(np.arange(len(HIDDEN)), runs_per_scale)
        truth = Truth()
        rng = np.random.default_rng(design_seed)
        log_tau = rng.normal(truth.log_tau_mean + truth.log_tau_slope * x[run_scale], truth.log_tau_sd)
        snapshot_epochs = np.arange(0, EPOCHS, SNAPSHOT_EVERY)
        # Clipped so that every run has at least two snapshots in each phase, which keeps every
        # group's within-run term and the array shapes the same in all replicates.
        tau = np.clip(np.rint(np.exp(log_tau)), 2 * SNAPSHOT_EVERY, EPOCHS - 2 * SNAPSHOT_EVERY)
        n_pre = (snapshot_epochs[None, :] < tau[:, None]).sum(axis=1)
        n_snapshots = snapshot_epochs.size
        count = np.column_stack([n_pre, n_snapshots - n_pre, np.full(run_scale.size, n_snapshots)]).ravel()

        # NOTE: the production intercept prior is centred on the mean group response of the data
        # it is built on. Here it is centred on 0, the placeholder response, for every replicate.
        # The model is unchanged by a common shift of responses and centre, so the value does
        # not matter, but SBC cannot check the data-dependent centring itself.
        self.placeholder = GroupData(
            mean=np.zeros(count.size),
            count=count,
            sum_sq=np.zeros(count.size),
            scale=np.repeat(run_scale, len(PHASES)),
            phase=np.tile(np.arange(len(PHASES)), run_scale.size),
            log_n=log_n,
        )
        # Data are simulated from the form with one observed within-run term per group, and
        # fitted with the production form, which sums those terms per cell.
        self.model = build_fss_model(self.placeholder, pointwise=True)
        self._sampler: Sampler | None = None

    def data_shape(self) -> dict:
        groups = self.placeholder
        counts = {
            phase: [int(groups.count[groups.phase == p].min()), int(groups.count[groups.phase == p].max())]
            for p, phase in enumerate(PHASES)
        }
        return {
            "scales": len(HIDDEN),
            "hidden": list(HIDDEN),
            "n_params": [4 * h + 1 for h in HIDDEN],
            "runs_per_scale": self.runs_per_scale,
            "epochs": EPOCHS,
            "snapshot_every": SNAPSHOT_EVERY,
            "groups": int(groups.mean.size),
            "snapshots_per_group_min_max": counts,
            "snapshots": int(groups.count.sum()),
        }

    def parameters(self) -> list[str]:
        names = []
        for variable in FSS_VARIABLES:
            if variable == "nu_minus_one":
                names.append(variable)
            else:
                names += [f"{variable}[{phase}]" for phase in PHASES]
        return names

    def _values(self, dataset, index: tuple) -> dict[str, float]:
        values = {}
        for variable in FSS_VARIABLES:
            array = dataset[variable].values[index]
            if variable == "nu_minus_one":
                values[variable] = array
            else:
                for p, phase in enumerate(PHASES):
                    values[f"{variable}[{phase}]"] = array[..., p]
        return values

    def simulate(self, n: int, seed: int) -> list[Replicate]:
        """Draw ``n`` replicates of every parameter, group mean and within-run sum of squares."""
        prior = _prior_draws(self.model, n, seed)
        groups = self.placeholder
        within = np.flatnonzero(groups.count > 1)  # the order of the ``within`` observations
        replicates = []
        for i in range(n):
            sum_sq = np.zeros(groups.count.size)
            sum_sq[within] = prior.prior_predictive["within"].values[0, i]
            simulated = GroupData(
                mean=prior.prior_predictive["group"].values[0, i],
                count=groups.count,
                sum_sq=sum_sq,
                scale=groups.scale,
                phase=groups.phase,
                log_n=groups.log_n,
            )
            truth = {name: float(value) for name, value in self._values(prior.prior, (0, i)).items()}
            replicates.append(Replicate(i, truth, simulated))
        return replicates

    def fit(self, replicate: Replicate, seed: int) -> Fit:
        """Refit as the pipeline refits D, with the centring that ``model_data`` chooses for these data."""
        if self._sampler is None:
            self._sampler = Sampler(build_fss_model(self.placeholder), self.settings)
        idata = self._sampler.sample(data=model_data(replicate.data), seed=seed)
        diagnostics = diagnose(idata, var_names=_sampled(idata))
        return Fit(self._values(idata.posterior, (Ellipsis,)), diagnostics)


CASES = {"changepoint": ChangepointCase, "fss": FssCase}
