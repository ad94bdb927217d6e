"""Build, write and open avalanche record files (NetCDF-4 with groups).

``write_records`` writes a file atomically: it writes a temporary file in the
target folder and renames it over the target only when the write has finished,
so a crash leaves any earlier file untouched. ``open_records`` opens a file and
validates it against ``data_gen.schema``; every problem is reported with the
file, the variable and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from data_gen.schema import COORDS, FLAGS, GROUPS, variable_attrs

COMPRESSION = {"zlib": True, "complevel": 4}
CHUNK_LIMITS = {"scale": 1, "seed": 64, "snapshot": 1 << 16, "cluster": 1 << 16}


class RecordsError(ValueError):
    """A records file that is missing, unreadable or does not follow the schema."""


def _finish_group(group: str, variables: dict[str, np.ndarray], dims_sizes: dict[str, int]) -> xr.Dataset:
    specs = GROUPS[group]
    data_vars, coords = {}, {}
    for name, values in variables.items():
        spec = specs[name]
        array = xr.Variable(spec.dims, np.asarray(values).astype(spec.dtype), attrs=variable_attrs(group, name))
        (coords if name in COORDS[group] else data_vars)[name] = array
    dataset = xr.Dataset(data_vars, coords=coords)
    for dim, size in dims_sizes.items():
        if dataset.sizes.get(dim, size) != size:
            raise ValueError(f"{group}: dimension {dim} has size {dataset.sizes[dim]}, expected {size}.")
    return dataset


def training_dataset(
    hidden: Sequence[int],
    n_params: Sequence[int],
    seeds: Sequence[int],
    epochs: int,
    metrics: dict[str, np.ndarray],
    grok_epoch: np.ndarray,
) -> xr.Dataset:
    """Assemble the /training group from (scale, seed, epoch) metric arrays."""
    variables = {
        "h": np.asarray(hidden),
        "n_params": np.asarray(n_params),
        "seed": np.asarray(seeds),
        "epoch": np.arange(epochs),
        **metrics,
        "grok_epoch": grok_epoch,
    }
    return _finish_group("training", variables, {"scale": len(hidden), "seed": len(seeds), "epoch": epochs})


def avalanche_dataset(columns: dict[str, np.ndarray], cluster_sizes: Sequence[np.ndarray] | None = None) -> xr.Dataset:
    """Assemble the /avalanches group from per-snapshot columns and optional ragged cluster sizes."""
    variables = dict(columns)
    if cluster_sizes is not None:
        variables["cluster_count"] = np.array([len(c) for c in cluster_sizes], dtype=np.int32)
        flat = [np.asarray(c, dtype=np.int32) for c in cluster_sizes]
        variables["cluster_size"] = np.concatenate(flat) if flat else np.zeros(0, np.int32)
    return _finish_group("avalanches", variables, {})


def cluster_sizes(avalanches: xr.Dataset) -> list[np.ndarray]:
    """Split the contiguous ragged ``cluster_size`` array into one array per snapshot."""
    if "cluster_count" not in avalanches:
        raise RecordsError(
            "This file has no cluster sizes (variable /avalanches/cluster_count is absent); "
            "re-run data_gen with probe.record_clusters = true."
        )
    counts = avalanches["cluster_count"].values
    return np.split(avalanches["cluster_size"].values, np.cumsum(counts)[:-1]) if len(counts) else []


def _encoding(dataset: xr.Dataset) -> dict[str, dict]:
    """zlib compression, chunked along runs (one scale, up to 64 seeds) and snapshots."""
    encoding = {}
    for name, variable in dataset.variables.items():
        if variable.size == 0:
            encoding[name] = {}
            continue
        chunks = tuple(
            min(size, CHUNK_LIMITS.get(dim, size)) for dim, size in zip(variable.dims, variable.shape, strict=True)
        )
        encoding[name] = {**COMPRESSION, "chunksizes": chunks}
    return encoding


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_records(path: str | Path, training: xr.Dataset, avalanches: xr.Dataset, attrs: dict[str, str]) -> Path:
    """Write both groups and the global attributes to ``path`` atomically."""
    path = Path(path)
    tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs=attrs), "/training": training, "/avalanches": avalanches})
    encoding = {"/training": _encoding(training), "/avalanches": _encoding(avalanches)}
    with atomic_path(path) as temporary:
        tree.to_netcdf(temporary, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return path


def _fail(path: Path, message: str, fix: str) -> None:
    raise RecordsError(f"{path}: {message}. {fix}")


REGENERATE = "Re-create the file with `python -m data_gen` (or --resume to finish an interrupted sweep)."


def _check_group(path: Path, dataset: xr.Dataset, group: str) -> None:
    for name, spec in GROUPS[group].items():
        where = f"/{group}/{name}"
        if name not in dataset.variables:
            if spec.required:
                _fail(path, f"variable {where} is missing", REGENERATE)
            continue
        variable = dataset.variables[name]
        if variable.dims != spec.dims:
            _fail(path, f"variable {where} has dims {variable.dims}, expected {spec.dims}", REGENERATE)
        expected_kind = np.dtype(spec.dtype).kind
        if variable.dtype.kind != expected_kind:
            _fail(path, f"variable {where} has dtype {variable.dtype}, expected {spec.dtype}", REGENERATE)
        if "long_name" not in variable.attrs:
            _fail(path, f"variable {where} has no long_name attribute", REGENERATE)
        if name in FLAGS:
            codes = np.unique(variable.values)
            allowed = range(len(FLAGS[name]))
            if len(codes) and (codes.min() < 0 or codes.max() >= len(FLAGS[name])):
                _fail(path, f"variable {where} holds codes {codes.tolist()} outside {list(allowed)}", REGENERATE)

    if group == "avalanches" and "cluster_count" in dataset:
        total = int(dataset["cluster_count"].sum())
        if total != dataset.sizes.get("cluster", 0):
            _fail(
                path,
                f"/avalanches/cluster_count sums to {total} but /avalanches/cluster_size has "
                f"{dataset.sizes.get('cluster', 0)} entries",
                REGENERATE,
            )


def open_records(path: str | Path) -> xr.DataTree:
    """Open a records file and validate it; raise RecordsError naming the file, variable and fix.

    Returns a DataTree with groups ``/training`` and ``/avalanches``; the global
    attributes hold the configuration (``config_toml``) and ``package_versions``.
    """
    path = Path(path)
    if not path.is_file():
        _fail(path, "file not found", "Check the path, or create it with `python -m data_gen --out PATH`.")
    try:
        tree = xr.open_datatree(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as error:
        _fail(path, f"not a readable NetCDF-4 file ({error})", REGENERATE)

    for group in GROUPS:
        if group not in tree.children:
            _fail(path, f"group /{group} is missing", REGENERATE)
        _check_group(path, tree[group].to_dataset(), group)
    for attribute in ("config_toml", "package_versions"):
        if attribute not in tree.attrs:
            _fail(path, f"global attribute {attribute!r} is missing", REGENERATE)
    try:
        json.loads(tree.attrs["package_versions"])
    except json.JSONDecodeError:
        _fail(path, "global attribute 'package_versions' is not JSON text", REGENERATE)
    return tree
