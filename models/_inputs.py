"""Input checks shared by the model builders.

Each check raises ``ValueError`` with the argument name, the value received and the fix.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_float_array(name: str, values: ArrayLike, ndim: int) -> np.ndarray:
    """Convert ``values`` to a float64 array with ``ndim`` dimensions, or raise ValueError."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric; converting it to float failed: {error}") from error
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array; got shape {array.shape}. Pass a {ndim}-D array.")
    return array


def require_finite(name: str, array: np.ndarray) -> None:
    """Raise ValueError when ``array`` contains NaN or infinity."""
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be finite; it contains {int(bad.sum())} NaN or infinite values "
            f"(first at index {first}: {array[first]}). Remove or replace them."
        )


def require_length(name: str, array: np.ndarray, length: int, expected_from: str) -> None:
    """Raise ValueError unless the 1-D ``array`` has ``length`` entries."""
    if array.shape[0] != length:
        raise ValueError(f"{name} has {array.shape[0]} entries but {expected_from} has {length}; make them match.")


def check_log_n(log_n: ArrayLike, n_scales: int, expected_from: str) -> np.ndarray:
    """Return log N as a float array after checking its length and that it spans at least two sizes."""
    log_n = as_float_array("log_n", log_n, 1)
    require_length("log_n", log_n, n_scales, expected_from)
    require_finite("log_n", log_n)
    if np.unique(log_n).size < 2:
        raise ValueError(
            f"log_n must contain at least 2 distinct network sizes to estimate a slope; got {log_n.tolist()}. "
            "Pass data from two or more scales."
        )
    return log_n


def check_standard_errors(name: str, se: np.ndarray) -> None:
    """Raise ValueError unless every entry of ``se`` is positive. NaN entries pass, so check for NaN separately."""
    if (se <= 0).any():
        first = tuple(int(i) for i in np.argwhere(se <= 0)[0])
        raise ValueError(
            f"{name} must be > 0 wherever the mean is observed; got {se[first]} at index {first}. "
            "Drop cells with a single snapshot or give them a positive standard error."
        )
