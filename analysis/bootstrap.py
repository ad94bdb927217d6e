"""The published estimator: least squares of log s_max on log N with a bootstrap over runs.

Kept beside the posterior so the report can show both on the same data. Runs are
resampled with replacement within each scale, so every resample keeps the design.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 10_000
INTERVAL = 0.95


def ols_slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y on x along the last axis."""
    x_centred = x - x.mean(axis=-1, keepdims=True)
    y_centred = y - y.mean(axis=-1, keepdims=True)
    return (x_centred * y_centred).sum(axis=-1) / (x_centred * x_centred).sum(axis=-1)


def bootstrap_slope(
    log_n: np.ndarray,
    log_max: np.ndarray,
    scale: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    chunk: int = 500,
) -> dict[str, object]:
    """Estimate, 95% percentile interval and resampled slopes of log s_max on log N.

    ``log_n`` and ``log_max`` hold one value per run; ``scale`` groups runs for the
    stratified resampling. Returns estimate, low, high, resamples and the slopes.
    """
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(scale == s) for s in np.unique(scale)]
    if len(members) < 2:
        raise ValueError(f"Runs span {len(members)} scale; the slope needs at least two network sizes.")
    slopes = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        picks = np.concatenate(
            [rng.choice(rows, size=(stop - start, len(rows)), replace=True) for rows in members], axis=1
        )
        slopes[start:stop] = ols_slope(log_n[picks], log_max[picks])
    tail = (1 - INTERVAL) / 2
    low, high = np.quantile(slopes, [tail, 1 - tail])
    return {
        "estimate": float(ols_slope(log_n, log_max)),
        "low": float(low),
        "high": float(high),
        "interval": INTERVAL,
        "resamples": resamples,
        "slopes": slopes,
    }
