"""The interval estimators of the coverage study, called the way the pipeline calls them.

Three intervals per data set, all for the same true exponent:

- ``bootstrap_D_max``: ``bootstrap_slope`` (10,000 resamples, 95% percentile interval) on
  the log s_max per run that ``max_size_groups`` takes over the window of
  ``FitOptions.window`` snapshots, as step 4 of ``Stages.fit_scaling`` does;
- ``posterior_D_max``: the 94% HDI of D_max from ``build_model`` on the same groups;
- ``posterior_D``: the 94% HDI of the headline D from ``build_model`` on every snapshot,
  entered through ``typical_size_groups``.

Each PyMC model is compiled once and refitted on later data sets through ``pm.Data``,
which saves about 15 s of compilation per fit. ``build_model`` centres the intercept
prior on the mean response of the data it was built from, so each later data set is
shifted by a constant to that same mean before it is swapped in. The model is
translation-equivariant (a constant shift of every response moves only the intercept),
so the posterior of the exponent is that of a model built afresh on the data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
from pytensor.graph.traversal import ancestors

from analysis.bootstrap import INTERVAL, RESAMPLES, bootstrap_slope
from analysis.inputs import AnalysisInput
from analysis.phases import max_size_groups, split_phases, typical_size_groups
from analysis.pipeline import FitOptions, _sampled
from models.diagnostics import HDI_PROB, diagnose
from models.fss import GroupData, build_model, model_data
from models.sampling import Sampler, SamplerSettings


@dataclass(frozen=True)
class Method:
    name: str
    nominal: float  # probability of the interval: the bootstrap's percentile level or the HDI's
    description: str


METHODS = (
    Method(
        "bootstrap_D_max",
        INTERVAL,
        f"published: least squares of log s_max on log N, {RESAMPLES:,}-resample percentile bootstrap",
    ),
    Method("posterior_D_max", HDI_PROB, "posterior HDI of D_max (models.fss, s_max response)"),
    Method("posterior_D", HDI_PROB, "posterior HDI of the headline D (models.fss, every snapshot)"),
)
EXPONENTS = {"posterior_D_max": "D_max", "posterior_D": "D"}


@dataclass
class Interval:
    """One method's interval on one data set."""

    method: str
    estimate: float  # the least-squares slope for the bootstrap, the posterior mean for a posterior
    low: float
    high: float
    low_at_bootstrap_level: float  # HDI bounds at the bootstrap's level, or the bootstrap's own bounds
    high_at_bootstrap_level: float
    passed_checks: bool | None  # whether the fit passed its convergence checks, None for the bootstrap


@dataclass
class _CompiledFit:
    sampler: Sampler
    reference_mean: float  # mean response of the groups the model was built from
    data_names: frozenset[str]  # pm.Data containers that the model's log density reads


class ReplicateFitter:
    """Apply the three estimators to data sets on the same network sizes, compiling each PyMC model once."""

    def __init__(
        self,
        sampler: SamplerSettings | None = None,
        window: int = FitOptions.window,
        resamples: int = RESAMPLES,
    ):
        self.settings = sampler or SamplerSettings()
        self.window = window
        self.resamples = resamples
        self._compiled: dict[str, _CompiledFit] = {}

    def fit(self, data: AnalysisInput, seed: int) -> list[Interval]:
        """Return the interval of every method in ``METHODS`` on ``data``.

        ``seed`` seeds both the sampler and the bootstrap, as the pipeline does with
        its sampler seed.
        """
        split = split_phases(data, None)
        max_groups, _ = max_size_groups(data, split, None, self.window)
        typical_groups = typical_size_groups(data, split)

        result = bootstrap_slope(
            max_groups.log_n[max_groups.scale],
            max_groups.mean,
            max_groups.scale,
            resamples=self.resamples,
            seed=seed,
        )
        intervals = [
            Interval(
                "bootstrap_D_max",
                result["estimate"],
                result["low"],
                result["high"],
                result["low"],
                result["high"],
                None,
            )
        ]
        for method, groups in (("posterior_D_max", max_groups), ("posterior_D", typical_groups)):
            intervals.append(self._posterior(method, groups, seed))
        return intervals

    def _posterior(self, method: str, groups: GroupData, seed: int) -> Interval:
        exponent = EXPONENTS[method]
        compiled = self._compiled.get(method)
        if compiled is None:
            model = build_model(groups, exponent_name=exponent)
            sampler = Sampler(model, self.settings)
            # nutpie (0.16) accepts new values only for the containers that the log density reads.
            used = set(ancestors([model.logp()]))
            names = frozenset(variable.name for variable in model.data_vars if variable in used)
            self._compiled[method] = _CompiledFit(sampler, float(groups.mean.mean()), names)
            idata = sampler.sample(seed=seed)
        else:
            values = {k: v for k, v in model_data(groups).items() if k in compiled.data_names}
            values["group_mean"] = groups.mean - groups.mean.mean() + compiled.reference_mean
            idata = compiled.sampler.sample(data=values, seed=seed)

        check = diagnose(idata, _sampled(idata))
        draws = idata.posterior[exponent].values.reshape(-1)
        low, high = az.hdi(draws, hdi_prob=HDI_PROB)
        wide_low, wide_high = az.hdi(draws, hdi_prob=INTERVAL)
        return Interval(
            method,
            float(draws.mean()),
            float(low),
            float(high),
            float(wide_low),
            float(wide_high),
            bool(check["passed"]),
        )
