"""Topology invariance of the scaling exponent D for the synthetic null control.

For i.i.d. Gaussian snapshots the mean avalanche size grows as N^1, so log s grows in
log N with slope D = 1 on every graph topology. This model estimates one D per topology,
partially pooled around a shared D0, from per-(topology, scale) means of log s.
"""

from __future__ import annotations

import dataclasses
import json

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from numpy.typing import ArrayLike

from models._inputs import as_float_array, check_log_n, check_standard_errors, require_finite
from models.sampling import Sampler, SamplerSettings, complete

# Prior constants, in the units of log s and log N.
D0_MU = 1.0  # D = 1 is the scaling of i.i.d. Gaussian input
D0_SD = 0.5
D_SD_SCALE = 0.1  # half-normal scale of the spread of D between topologies
A_SD = 5.0
SIGMA_SD = 0.5  # half-normal scale of the scatter beyond the standard errors


def _check_inputs(
    mean_log_size: ArrayLike, se_log_size: ArrayLike, log_n: ArrayLike, topologies: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    mean = as_float_array("mean_log_size", mean_log_size, 2)
    se = as_float_array("se_log_size", se_log_size, 2)
    if se.shape != mean.shape:
        raise ValueError(
            f"se_log_size has shape {se.shape} but mean_log_size has shape {mean.shape}; "
            "pass one standard error per (topology, scale) cell."
        )
    n_topologies, n_scales = mean.shape
    if n_scales < 2:
        raise ValueError(
            f"mean_log_size has {n_scales} scale column(s); D needs at least 2 scales. Pass a (topology, scale) array."
        )
    if n_topologies < 1:
        raise ValueError("mean_log_size has no topology rows; pass at least one topology.")
    require_finite("mean_log_size", mean)
    require_finite("se_log_size", se)
    check_standard_errors("se_log_size", se)
    log_n = check_log_n(log_n, n_scales, "the scale axis of mean_log_size")

    names = [str(name) for name in np.atleast_1d(np.asarray(topologies))]
    if len(names) != n_topologies:
        raise ValueError(
            f"topologies has {len(names)} names but mean_log_size has {n_topologies} topology rows; "
            "pass one name per row."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"topologies must be distinct; got {names}.")
    return mean, se, log_n, names


def build_topology_model(
    mean_log_size: ArrayLike, se_log_size: ArrayLike, log_n: ArrayLike, topologies: ArrayLike
) -> pm.Model:
    r"""Build the partially pooled model of D per topology.

    .. math::

        x_s &= \log N_s - \tfrac{1}{S} \textstyle\sum_{s'} \log N_{s'} \\
        y_{ts} &\sim \mathrm{Normal}\!\left(a_t + D_t x_s,\;
            \sqrt{\mathrm{se}_{ts}^2 + \sigma^2}\right) \\
        D_t &= D_0 + \tau_D z_t, \qquad z_t \sim \mathrm{Normal}(0, 1) \\
        D_0 &\sim \mathrm{Normal}(1, 0.5), \quad
        \tau_D \sim \mathrm{HalfNormal}(0.1) \\
        a_t &\sim \mathrm{Normal}(\bar y, 5), \quad
        \sigma \sim \mathrm{HalfNormal}(0.5)

    Here ybar is the mean of all cells, so the intercept prior is centred on the data.

    Parameters
    ----------
    mean_log_size : array_like, shape (topology, scale)
        Mean of log s over the synthetic snapshots of each cell. NaN is not allowed.
    se_log_size : array_like, shape (topology, scale)
        Standard error of that mean, > 0.
    log_n : array_like, shape (scale,)
        Natural log of the node count N of each scale.
    topologies : array_like of str, shape (topology,)
        Distinct topology names, used as the ``topology`` coordinates.

    Returns
    -------
    pymc.Model
        Dims ``topology`` and ``scale`` (0 .. S-1). The observed variable is
        ``mean_log_size`` over (topology, scale); ``D`` is a deterministic over
        ``topology`` and ``D0`` and ``D_sd`` (tau_D) are scalars.

    Raises
    ------
    ValueError
        On mismatched shapes, fewer than 2 scales, NaN or infinite values,
        non-positive standard errors, or repeated topology names.
    """
    mean, se, log_n, names = _check_inputs(mean_log_size, se_log_size, log_n, topologies)
    n_scales = mean.shape[1]
    x = log_n - log_n.mean()

    coords = {"topology": names, "scale": np.arange(n_scales)}
    with pm.Model(coords=coords) as model:
        x_data = pm.Data("log_n_centred", x, dims="scale")
        se_data = pm.Data("se_log_size", se, dims=("topology", "scale"))

        D0 = pm.Normal("D0", D0_MU, D0_SD)
        D_sd = pm.HalfNormal("D_sd", sigma=D_SD_SCALE)
        D_z = pm.Normal("D_z", 0.0, 1.0, dims="topology")
        D = pm.Deterministic("D", D0 + D_sd * D_z, dims="topology")

        a = pm.Normal("a", float(mean.mean()), A_SD, dims="topology")
        sigma = pm.HalfNormal("sigma", sigma=SIGMA_SD)
        pm.Normal(
            "mean_log_size",
            mu=a[:, None] + D[:, None] * x_data[None, :],
            sigma=pt.sqrt(se_data**2 + sigma**2),
            observed=mean,
            dims=("topology", "scale"),
        )
    return model


def fit_topology(
    mean_log_size: ArrayLike,
    se_log_size: ArrayLike,
    log_n: ArrayLike,
    topologies: ArrayLike,
    settings: SamplerSettings,
) -> az.InferenceData:
    """Fit the topology model and return posterior, predictive and log-likelihood groups.

    The arguments are those of `build_topology_model`. ``idata.attrs`` stores the model
    name, log N and the prior constants as JSON text, and the sampler settings as JSON
    text.
    """
    model = build_topology_model(mean_log_size, se_log_size, log_n, topologies)
    idata = Sampler(model, settings).sample()
    idata = complete(idata, model, seed=settings.seed)

    log_n = np.asarray(log_n, dtype=float)
    idata.attrs.update(
        {
            "model": "topology",
            "log_n": json.dumps(log_n.tolist()),
            "log_n_centre": float(log_n.mean()),
            "priors": json.dumps(
                {
                    "D0": ["Normal", D0_MU, D0_SD],
                    "D_sd": ["HalfNormal", D_SD_SCALE],
                    "a": ["Normal", "mean of all cells", A_SD],
                    "sigma": ["HalfNormal", SIGMA_SD],
                }
            ),
            "sampler": json.dumps(dataclasses.asdict(settings)),
        }
    )
    return idata


def band_probabilities(idata: az.InferenceData, band: tuple[float, float] = (0.95, 1.05)) -> xr.Dataset:
    """Compute the posterior probability that each D[t], and D0, lies inside ``band``.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit from `fit_topology`, with ``D`` over (chain, draw, topology) and ``D0``.
    band : tuple of float
        Closed interval (low, high) of D, with low < high.

    Returns
    -------
    xarray.Dataset
        ``D`` over ``topology`` and the scalar ``D0``, each the fraction of posterior
        draws inside the band. The band limits are in the attributes ``band_low`` and
        ``band_high``.

    Raises
    ------
    ValueError
        When the posterior lacks ``D`` or ``D0`` or the band is not a finite interval
        with low < high.
    """
    if "posterior" not in idata.groups() or not {"D", "D0"} <= set(idata.posterior.data_vars):
        raise ValueError("idata has no posterior variables 'D' and 'D0'; pass the result of fit_topology.")
    limits = np.asarray(band, dtype=float)
    if limits.shape != (2,) or not np.isfinite(limits).all() or limits[0] >= limits[1]:
        raise ValueError(f"band must be a finite interval (low, high) with low < high; got {band}.")
    low, high = float(limits[0]), float(limits[1])

    def inside(draws: xr.DataArray) -> xr.DataArray:
        return ((draws >= low) & (draws <= high)).mean(("chain", "draw"))

    posterior = idata.posterior
    return xr.Dataset(
        {"D": inside(posterior["D"]), "D0": inside(posterior["D0"])},
        attrs={"band_low": low, "band_high": high},
    )
