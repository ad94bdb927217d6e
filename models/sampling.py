"""Run NUTS on a PyMC model with nutpie when it is installed, else with PyMC's own sampler.

nutpie compiles the model with numba once; ``Sampler.sample`` can then swap the data
of ``pm.Data`` containers (``data=``) without compiling again, which refits on
resampled or held-out data cheaply.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nutpie", "pymc")
STORED_VALUES = 12_000_000  # maximum values per variable in log_likelihood and posterior_predictive (96 MB)


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1500  # kept draws per chain
    tune: int = 1000  # warm-up draws per chain, discarded
    chains: int = 4
    seed: int = 0
    backend: str = "auto"  # "auto" takes nutpie when installed, else "pymc"
    cores: int | None = None  # parallel chains; default min(chains, CPU count)
    target_accept: float = 0.95  # NUTS step-size adaptation target; higher avoids divergences

    def resolved_backend(self) -> str:
        if self.backend not in BACKENDS:
            raise ValueError(f"Unknown sampler backend {self.backend!r}; choose one of {list(BACKENDS)}.")
        if self.backend == "auto":
            return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
        return self.backend


class Sampler:
    """Sample one PyMC model repeatedly, compiling it once."""

    def __init__(self, model: pm.Model, settings: SamplerSettings):
        self.model = model
        self.settings = settings
        self.backend = settings.resolved_backend()
        self._compiled = None

    def sample(
        self,
        data: dict[str, np.ndarray] | None = None,
        seed: int | None = None,
        target_accept: float | None = None,
        draws: int | None = None,
        tune: int | None = None,
    ) -> az.InferenceData:
        """Draw from the posterior, after replacing the named ``pm.Data`` values by ``data``.

        Entries of ``data`` for containers that the log density does not read are ignored,
        so one dict can serve several forms of a model. ``seed``, ``target_accept``,
        ``draws`` and ``tune`` override the settings for this call only.
        """
        s = self.settings
        seed = s.seed if seed is None else seed
        target_accept = s.target_accept if target_accept is None else target_accept
        draws = s.draws if draws is None else draws
        tune = s.tune if tune is None else tune
        cores = s.cores or min(s.chains, os.cpu_count() or 1)
        if self.backend == "nutpie":
            import nutpie

            if self._compiled is None:
                self._compiled = nutpie.compile_pymc_model(self.model)
            data = {name: value for name, value in (data or {}).items() if name in self._compiled.shared_data}
            compiled = self._compiled.with_data(**data) if data else self._compiled
            return nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=s.chains,
                cores=cores,
                seed=seed,
                target_accept=target_accept,
                progress_bar=False,
                save_warmup=False,
            )

        with self.model:
            names = {variable.name for variable in self.model.data_vars}
            data = {name: value for name, value in (data or {}).items() if name in names}
            if data:
                pm.set_data(data)
            return pm.sample(
                draws=draws,
                tune=tune,
                chains=s.chains,
                cores=cores,
                random_seed=seed,
                target_accept=target_accept,
                progressbar=False,
                compute_convergence_checks=False,
            )


def complete(
    idata: az.InferenceData, model: pm.Model, *, predictive: bool = True, log_likelihood: bool = True, seed: int = 0
) -> az.InferenceData:
    """Add log_likelihood, posterior_predictive and observed_data groups computed from ``model``.

    Posterior predictive sampling also adds observed_data for every observed variable. Where
    observations times draws pass STORED_VALUES, both groups use evenly spaced draws of
    each chain, so their ``draw`` coordinate is a subset of the posterior's.
    """
    if "constant_data" not in idata.groups():
        # PyMC resamples every variable downstream of data it cannot compare with the trace;
        # recording the data used keeps posterior predictive draws on the fitted parameters.
        idata.add_groups(constant_data=_data_values(model))
    thinned = _thinned(idata, model)
    with model:
        if log_likelihood:
            pm.compute_log_likelihood(thinned, extend_inferencedata=True, progressbar=False)
        if predictive:
            pm.sample_posterior_predictive(thinned, extend_inferencedata=True, random_seed=seed, progressbar=False)
    if thinned is not idata:
        idata.add_groups({name: thinned[name] for name in thinned.groups() if name not in idata.groups()})
    return idata


def _thinned(idata: az.InferenceData, model: pm.Model) -> az.InferenceData:
    """Return ``idata`` or, when a draw-level group would pass STORED_VALUES, a copy on evenly spaced draws.

    Thousands of runs times thousands of draws make log-likelihood and predictive groups
    of gigabytes. A few hundred draws per chain still suffice for PSIS-LOO and for the
    predictive plots. The copy shares constant_data, so predictions stay on the data used.
    """
    observations = max((int(model.rvs_to_values[rv].eval().size) for rv in model.observed_RVs), default=0)
    n_chains, n_draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    draws_per_chain = max(1, STORED_VALUES // max(1, observations * n_chains))
    if draws_per_chain >= n_draws:
        return idata
    draws = np.unique(np.linspace(0, n_draws - 1, draws_per_chain).round().astype(int))
    groups = {"posterior": idata.posterior.isel(draw=draws)}
    if "constant_data" in idata.groups():
        groups["constant_data"] = idata.constant_data
    return az.InferenceData(**groups)


def _data_values(model: pm.Model) -> xr.Dataset:
    variables = {}
    for data in model.data_vars:
        value = np.asarray(data.get_value())
        dims = model.named_vars_to_dims.get(data.name) or tuple(f"{data.name}_dim_{i}" for i in range(value.ndim))
        variables[data.name] = (dims, value)
    return xr.Dataset(variables, coords={k: np.asarray(v) for k, v in model.coords.items() if v is not None})
