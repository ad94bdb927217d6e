"""Posterior summaries and atomic writing of InferenceData files and summary.json.

NetCDF attributes can hold only strings and numbers, so InferenceData attributes of any
other type (lists, dicts, None, booleans) are stored as JSON text, and their names are
listed in the attribute ``json_attrs`` so that ``load_idata`` restores them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import arviz as az
import numpy as np

from data_gen.records import atomic_path
from models.diagnostics import HDI_PROB

JSON_ATTRS = "json_attrs"


def posterior_summary(values) -> dict[str, float]:
    """Mean, sd and 94% HDI of posterior draws (any shape; all draws pooled)."""
    draws = np.asarray(values, dtype=float).ravel()
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return {"mean": None, "sd": None, "hdi_low": None, "hdi_high": None}
    low, high = az.hdi(draws, hdi_prob=HDI_PROB)
    return {
        "mean": float(draws.mean()),
        "sd": float(draws.std(ddof=1)) if len(draws) > 1 else 0.0,
        "hdi_low": float(low),
        "hdi_high": float(high),
    }


def _plain(value) -> bool:
    return isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(value, bool)


def encode_attrs(attrs: dict) -> dict:
    """Return attrs with every value that is not a plain string or number as JSON text."""
    encoded, as_json = {}, []
    for key, value in attrs.items():
        if _plain(value):
            encoded[key] = value
        else:
            encoded[key] = json.dumps(value, default=_json_default)
            as_json.append(key)
    if as_json:
        encoded[JSON_ATTRS] = json.dumps(as_json)
    return encoded


def decode_attrs(attrs: dict) -> dict:
    decoded = dict(attrs)
    for key in json.loads(decoded.pop(JSON_ATTRS, "[]")):
        decoded[key] = json.loads(decoded[key])
    return decoded


def save_idata(idata: az.InferenceData, path: Path, attrs: dict | None = None) -> Path:
    """Write ``idata`` to NetCDF atomically; ``attrs`` join its attributes on every group."""
    idata = idata.copy()
    merged = {**idata.attrs, **(attrs or {})} if hasattr(idata, "attrs") else dict(attrs or {})
    for group in idata.groups():
        dataset = getattr(idata, group)
        dataset.attrs = encode_attrs({**decode_attrs(dataset.attrs), **merged})
        for name, variable in dataset.data_vars.items():
            if variable.dtype == bool:
                # netCDF4 has no boolean type; xarray would turn these into int8 with a dtype
                # marker, which arviz reads back as int8.
                dataset[name] = variable.astype(np.int8)
                dataset[name].attrs["boolean"] = 1
    with atomic_path(Path(path)) as temporary:
        idata.to_netcdf(str(temporary))
    return Path(path)


def load_idata(path: Path) -> az.InferenceData:
    """Read an InferenceData file written by ``save_idata``, restoring booleans and attributes."""
    idata = az.from_netcdf(str(path))
    for group in idata.groups():
        dataset = getattr(idata, group)
        dataset.attrs = decode_attrs(dataset.attrs)
        for name, variable in dataset.data_vars.items():
            if variable.attrs.get("boolean") == 1:
                dataset[name] = variable.astype(bool)
    return idata


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(obj):
    """Replace NaN and infinities by None, since JSON has no such numbers."""
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(float(obj)):
        return None
    return obj


def write_json(path: Path, content: dict) -> Path:
    """Write ``content`` as indented JSON atomically, with NaN as null."""
    text = json.dumps(_finite(content), indent=2, default=_json_default, allow_nan=False)
    with atomic_path(Path(path)) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
    return Path(path)
