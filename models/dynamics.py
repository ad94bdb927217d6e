"""Time-resolved finite-size scaling exponent D(t) in grokking-aligned time.

Each cell (bin, scale) summarises the avalanches of one network size in one bin of
aligned time t = epoch - tau by the mean of log s over its snapshots and that mean's
standard error. Within a bin, log s grows linearly in log N with slope D, and both the
slope and the intercept follow Gaussian random walks over the bins.
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

from models._inputs import as_float_array, check_log_n, check_standard_errors, require_finite, require_length
from models.sampling import Sampler, SamplerSettings, complete

# Prior constants, in the units of log s and log N. The anchor is the middle bin.
D_ANCHOR_MU = 1.0  # D = 1 is the scaling of i.i.d. Gaussian input
D_ANCHOR_SD = 0.5
D_STEP_SD = 0.1  # half-normal scale of the per-bin step of D
A_ANCHOR_SD = 5.0
A_STEP_SD = 0.5  # half-normal scale of the per-bin step of the intercept
SIGMA_SD = 0.5  # half-normal scale of the scatter beyond the standard errors


def _check_inputs(
    mean_log_size: ArrayLike, se_log_size: ArrayLike, log_n: ArrayLike, bin_centres: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mean = as_float_array("mean_log_size", mean_log_size, 2)
    se = as_float_array("se_log_size", se_log_size, 2)
    if se.shape != mean.shape:
        raise ValueError(
            f"se_log_size has shape {se.shape} but mean_log_size has shape {mean.shape}; "
            "pass one standard error per (bin, scale) cell."
        )
    n_bins, n_scales = mean.shape
    if n_scales < 2:
        raise ValueError(
            f"mean_log_size has {n_scales} scale column(s); D needs at least 2 scales. Pass a (bin, scale) array."
        )
    if n_bins < 2:
        raise ValueError(f"mean_log_size has {n_bins} bin row(s); a time course needs at least 2 bins.")

    for name, array in (("mean_log_size", mean), ("se_log_size", se)):
        if np.isinf(array).any():
            raise ValueError(f"{name} contains infinite values; mark empty cells with NaN instead.")
    mismatch = np.isnan(mean) != np.isnan(se)
    if mismatch.any():
        first = tuple(int(i) for i in np.argwhere(mismatch)[0])
        raise ValueError(
            f"mean_log_size and se_log_size must be NaN in the same cells; cell {first} has mean {mean[first]} "
            f"and standard error {se[first]}. Set both to NaN for an empty cell."
        )
    observed = ~np.isnan(mean)
    if not observed.any():
        raise ValueError("mean_log_size is NaN in every cell; pass at least one observed cell.")
    if np.unique(np.nonzero(observed)[1]).size < 2:
        raise ValueError("Observed cells cover fewer than 2 scales; D needs data from at least 2 network sizes.")
    check_standard_errors("se_log_size", se[observed])

    log_n = check_log_n(log_n, n_scales, "the scale axis of mean_log_size")
    centres = as_float_array("bin_centres", bin_centres, 1)
    require_length("bin_centres", centres, n_bins, "the bin axis of mean_log_size")
    require_finite("bin_centres", centres)
    if (np.diff(centres) <= 0).any():
        raise ValueError(f"bin_centres must be strictly increasing; got {centres.tolist()}. Sort the bins by time.")
    return mean, se, log_n, centres


def _random_walk(anchor_mu: float, anchor_sd: float, step, z, anchor: int):
    """Return a Gaussian random walk over bins, non-centred and anchored at bin ``anchor``.

    The value at ``anchor`` is ``anchor_mu + anchor_sd * z[anchor]``, and each step away
    from it, to the left or to the right, adds ``step * z[b]``. Anchoring at the middle
    bin halves the longest cumulative sum compared with anchoring at bin 0. That matters
    because a cumulative sum of n standard normals correlates them in the posterior,
    with a condition number that grows like n**2 once the data pin down the values.
    """
    centre = anchor_mu + anchor_sd * z[anchor]
    left = centre + step * pt.cumsum(z[:anchor][::-1])[::-1]
    right = centre + step * pt.cumsum(z[anchor + 1 :])
    return pt.concatenate([left, centre[None], right])


def build_dynamics_model(
    mean_log_size: ArrayLike, se_log_size: ArrayLike, log_n: ArrayLike, bin_centres: ArrayLike
) -> pm.Model:
    r"""Build the model of D(t) from per-cell means of log avalanche size.

    .. math::

        x_s &= \log N_s - \tfrac{1}{S} \textstyle\sum_{s'} \log N_{s'} \\
        y_{bs} &\sim \mathrm{Normal}\!\left(a_b + D_b x_s,\;
            \sqrt{\mathrm{se}_{bs}^2 + \sigma^2}\right)
            \quad \text{for each observed cell } (b, s) \\
        D_{b^*} &= 1 + 0.5\, z^D_{b^*}, \quad
        D_b = D_{b+1} + \delta_D z^D_b \;(b < b^*), \quad
        D_b = D_{b-1} + \delta_D z^D_b \;(b > b^*) \\
        a_{b^*} &= \bar y + 5\, z^a_{b^*}, \quad
        a_b = a_{b+1} + \delta_a z^a_b \;(b < b^*), \quad
        a_b = a_{b-1} + \delta_a z^a_b \;(b > b^*) \\
        z^D_b, z^a_b &\sim \mathrm{Normal}(0, 1), \quad
        \delta_D \sim \mathrm{HalfNormal}(0.1), \quad
        \delta_a \sim \mathrm{HalfNormal}(0.5), \quad
        \sigma \sim \mathrm{HalfNormal}(0.5)

    Both walks are anchored at the middle bin, b* = B // 2 for B bins. D there has the
    prior Normal(1, 0.5), and each bin further out adds a Normal(0, delta_D) step. The
    intercept likewise starts from Normal(ybar, 5), where ybar is the mean of the
    observed cells. The step sizes are per bin, so they are a rate in time only when
    the bins are evenly spaced.

    Parameters
    ----------
    mean_log_size : array_like, shape (bin, scale)
        Mean of log s over the snapshots of each cell; NaN for an empty cell.
    se_log_size : array_like, shape (bin, scale)
        Standard error of that mean; NaN exactly where ``mean_log_size`` is NaN.
    log_n : array_like, shape (scale,)
        Natural log of the parameter count N of each scale.
    bin_centres : array_like, shape (bin,)
        Centre of each bin of aligned time epoch - tau, in epochs, strictly increasing.

    Returns
    -------
    pymc.Model
        Dims ``bin`` (coordinates: the bin centres), ``scale`` (0 .. S-1) and ``cell``
        (one per observed cell, in row-major order). The observed variable is
        ``mean_log_size`` over ``cell``; ``D`` and ``a`` are deterministics over ``bin``.

    Raises
    ------
    ValueError
        On mismatched shapes, fewer than 2 bins or scales, NaN patterns that differ
        between mean and standard error, non-positive standard errors, or bin centres
        that are not strictly increasing.
    """
    mean, se, log_n, centres = _check_inputs(mean_log_size, se_log_size, log_n, bin_centres)
    n_bins, n_scales = mean.shape
    bin_index, scale_index = np.nonzero(~np.isnan(mean))
    x = log_n - log_n.mean()
    y_bar = float(mean[bin_index, scale_index].mean())

    coords = {"bin": centres, "scale": np.arange(n_scales), "cell": np.arange(bin_index.size)}
    with pm.Model(coords=coords) as model:
        x_data = pm.Data("log_n_centred", x, dims="scale")
        se_data = pm.Data("se_log_size", se[bin_index, scale_index], dims="cell")

        anchor = n_bins // 2
        D_step = pm.HalfNormal("D_step", sigma=D_STEP_SD)
        D_z = pm.Normal("D_z", 0.0, 1.0, dims="bin")
        D = pm.Deterministic("D", _random_walk(D_ANCHOR_MU, D_ANCHOR_SD, D_step, D_z, anchor), dims="bin")

        a_step = pm.HalfNormal("a_step", sigma=A_STEP_SD)
        a_z = pm.Normal("a_z", 0.0, 1.0, dims="bin")
        a = pm.Deterministic("a", _random_walk(y_bar, A_ANCHOR_SD, a_step, a_z, anchor), dims="bin")

        sigma = pm.HalfNormal("sigma", sigma=SIGMA_SD)
        mu = a[bin_index] + D[bin_index] * x_data[scale_index]
        pm.Normal(
            "mean_log_size",
            mu=mu,
            sigma=pt.sqrt(se_data**2 + sigma**2),
            observed=mean[bin_index, scale_index],
            dims="cell",
        )
    return model


def fit_dynamics(
    mean_log_size: ArrayLike,
    se_log_size: ArrayLike,
    log_n: ArrayLike,
    bin_centres: ArrayLike,
    settings: SamplerSettings,
) -> az.InferenceData:
    """Fit the D(t) model and return posterior, predictive and log-likelihood groups.

    The arguments are those of `build_dynamics_model`. Every group with a ``cell`` dim
    gets the coordinates ``cell_bin`` (bin centre) and ``cell_scale`` (scale index).
    ``idata.attrs`` stores the model name, log N, the bin centres and the prior
    constants as JSON text, and the sampler settings as JSON text.
    """
    model = build_dynamics_model(mean_log_size, se_log_size, log_n, bin_centres)
    idata = Sampler(model, settings).sample()
    idata = complete(idata, model, seed=settings.seed)

    mean = np.asarray(mean_log_size, dtype=float)
    centres = np.asarray(bin_centres, dtype=float)
    log_n = np.asarray(log_n, dtype=float)
    bin_index, scale_index = np.nonzero(~np.isnan(mean))
    cell_coords = {"cell_bin": ("cell", centres[bin_index]), "cell_scale": ("cell", scale_index)}
    for group in idata.groups():
        dataset = idata[group]
        if "cell" in dataset.dims:
            setattr(idata, group, dataset.assign_coords(cell_coords))

    idata.attrs.update(
        {
            "model": "dynamics",
            "log_n": json.dumps(log_n.tolist()),
            "log_n_centre": float(log_n.mean()),
            "bin_centres": json.dumps(centres.tolist()),
            "n_cells": int(bin_index.size),
            "anchor_bin": int(centres.size // 2),
            "priors": json.dumps(
                {
                    "D_anchor": ["Normal", D_ANCHOR_MU, D_ANCHOR_SD],
                    "D_step": ["HalfNormal", D_STEP_SD],
                    "a_anchor": ["Normal", "mean of observed cells", A_ANCHOR_SD],
                    "a_step": ["HalfNormal", A_STEP_SD],
                    "sigma": ["HalfNormal", SIGMA_SD],
                }
            ),
            "sampler": json.dumps(dataclasses.asdict(settings)),
        }
    )
    return idata


def crossing_time(
    idata: az.InferenceData, bin_centres: ArrayLike, level: float = 1.0, direction: str = "up"
) -> xr.DataArray:
    """Compute, per posterior draw, the aligned time at which D(t) first crosses ``level`` upwards.

    With ``direction="down"`` the same holds for the first downward crossing.

    The crossing lies between the first pair of adjacent bins with D < ``level`` at the
    earlier bin and D >= ``level`` at the later one, and its time is interpolated
    linearly between the two bin centres. A draw whose D never crosses upwards gets NaN,
    and so does a draw that starts at or above ``level`` and never dips below it.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit from `fit_dynamics`, with ``D`` over (chain, draw, bin).
    bin_centres : array_like, shape (bin,)
        The bin centres passed to the fit, in epochs since tau.
    level : float
        Value of D whose crossing is timed.

    Returns
    -------
    xarray.DataArray
        Crossing time in epochs since tau, dims (chain, draw).

    Raises
    ------
    ValueError
        When the posterior has no ``D``, ``bin_centres`` does not match its bin axis or
        is not strictly increasing, or ``level`` is not finite.
    """
    if "posterior" not in idata.groups() or "D" not in idata.posterior:
        raise ValueError("idata has no posterior variable 'D'; pass the result of fit_dynamics.")
    if not np.isfinite(level):
        raise ValueError(f"level must be finite; got {level}.")
    D = idata.posterior["D"].transpose("chain", "draw", "bin")
    centres = as_float_array("bin_centres", bin_centres, 1)
    require_length("bin_centres", centres, D.sizes["bin"], "the bin axis of the posterior D")
    require_finite("bin_centres", centres)
    if (np.diff(centres) <= 0).any():
        raise ValueError(f"bin_centres must be strictly increasing; got {centres.tolist()}.")

    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down'; got {direction!r}.")
    # A downward crossing of level is an upward crossing of -level by -D.
    sign = 1.0 if direction == "up" else -1.0
    values = sign * D.values
    level = sign * level
    below = values < level
    upward = below[..., :-1] & ~below[..., 1:]  # interval k runs from bin k to bin k + 1
    crossed = upward.any(axis=-1)
    k = upward.argmax(axis=-1)

    d_before = np.take_along_axis(values, k[..., None], axis=-1)[..., 0]
    d_after = np.take_along_axis(values, k[..., None] + 1, axis=-1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (level - d_before) / (d_after - d_before)
    times = centres[k] + fraction * (centres[k + 1] - centres[k])
    times = np.where(crossed, times, np.nan)

    return xr.DataArray(
        times,
        dims=("chain", "draw"),
        coords={"chain": D["chain"], "draw": D["draw"]},
        name="crossing_time",
        attrs={"units": "epochs since tau", "level": float(level)},
    )
