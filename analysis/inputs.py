"""Load and validate an input file for fit_phases, before any sampling starts.

Two kinds of file are accepted:

- a records file written by ``python -m data_gen`` (groups /training and /avalanches);
- an external avalanche file: a NetCDF file whose group /avalanches (or root group)
  has a dim ``snapshot`` and variables ``n_params`` and ``size``, optionally ``phase``
  (strings "pre", "post", "synthetic", or integer codes with CF ``flag_meanings``),
  ``run`` (any integer run id) and ``valid`` (1 or 0). docs/external-data.md
  describes the format.

Every problem raises InputError naming the file, the variable and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from data_gen.records import RecordsError, open_records
from data_gen.schema import SOURCES
from models.fss import PHASES

log = logging.getLogger(__name__)


class InputError(ValueError):
    """An input file that fit_phases cannot analyse, with the variable and the fix."""


@dataclass
class Snapshots:
    """Valid avalanches with size > 0, one entry per snapshot."""

    log_size: np.ndarray
    size: np.ndarray
    scale: np.ndarray  # index into AnalysisInput.n_params
    run: np.ndarray  # index into AnalysisInput.run_scale
    epoch: np.ndarray  # training epoch, -1 when unknown
    source: np.ndarray  # 0 real, 1 synthetic
    topology: np.ndarray  # topology code, -1 when unknown
    phase: np.ndarray  # explicit phase index into PHASES; -1 where changepoints decide, or no phase at all


@dataclass
class AnalysisInput:
    path: Path
    sha256: str
    kind: str  # "records" or "external"
    n_params: np.ndarray  # (n_scales,) N of each scale, ascending
    run_scale: np.ndarray  # (n_runs,) scale index of each run
    snapshots: Snapshots
    dropped: dict[str, int] = field(default_factory=dict)  # snapshots left out, by reason
    train_acc: np.ndarray | None = None  # (n_runs, n_epochs) records only
    gini: np.ndarray | None = None  # (n_runs, n_epochs) records only
    n_patterns: int | None = None  # training patterns per epoch (binomial trials)
    hidden: np.ndarray | None = None  # (n_scales,) hidden widths, records only
    config_toml: str = ""  # data_gen configuration of a records file
    real_topology: int = -1  # topology code of the real snapshots
    topology_names: tuple[str, ...] = ()

    @property
    def log_n(self) -> np.ndarray:
        return np.log(self.n_params.astype(float))

    @property
    def n_runs(self) -> int:
        return len(self.run_scale)

    @property
    def has_training(self) -> bool:
        return self.train_acc is not None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(path: Path, message: str, fix: str) -> None:
    raise InputError(f"{path}: {message}. {fix}")


def load_input(path: str | Path) -> AnalysisInput:
    """Open ``path``, decide its kind and validate every variable fit_phases will use."""
    path = Path(path)
    if not path.is_file():
        _fail(path, "file not found", "Pass a file written by `python -m data_gen` or an external avalanche file.")
    try:
        tree = xr.open_datatree(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as error:
        _fail(path, f"not a readable NetCDF-4 file ({error})", "Check the path, or re-create the file.")
    with tree:
        groups = set(tree.children)
    if "training" in groups:
        return _load_records(path)
    return _load_external(path, tree)


def _load_records(path: Path) -> AnalysisInput:
    try:
        tree = open_records(path)
    except RecordsError as error:
        raise InputError(str(error)) from None
    with tree:
        training = tree["training"].to_dataset().load()
        avalanches = tree["avalanches"].to_dataset().load()
        config_toml = tree.attrs["config_toml"]

    n_scales, n_seeds = training.sizes["scale"], training.sizes["seed"]
    if n_scales < 2:
        _fail(
            path,
            f"/training has {n_scales} scale; a scaling exponent needs at least two network sizes",
            "Re-run data_gen with at least two values in --scales.",
        )
    config = tomllib.loads(config_toml)
    from data_gen.tasks import get_task  # the task fixes the number of patterns

    task = get_task(config["training"]["task"])
    n_patterns = len(task.train_targets)

    train_acc = training["train_acc"].values.reshape(n_scales * n_seeds, -1)
    if not np.isfinite(train_acc).all():
        bad = np.argwhere(~np.isfinite(training["train_acc"].values))[0]
        _fail(
            path,
            f"/training/train_acc is NaN or infinite (first at scale {bad[0]}, seed {bad[1]}, epoch {bad[2]})",
            "A run diverged; re-run data_gen with a smaller learning rate.",
        )

    scale = avalanches["scale"].values.astype(np.int64)
    seed = avalanches["seed"].values.astype(np.int64)
    run = scale * n_seeds + seed
    snapshots, dropped = _select_snapshots(
        path,
        avalanches["size"].values,
        avalanches["valid"].values,
        scale,
        run,
        epoch=avalanches["epoch"].values,
        source=avalanches["source"].values,
        topology=avalanches["topology"].values,
        phase=np.full(len(scale), -1),
    )
    topologies = tuple(avalanches["topology"].attrs["flag_meanings"].split())
    real_topology = topologies.index(config["probe"]["topology"])
    return AnalysisInput(
        path=path,
        sha256=file_sha256(path),
        kind="records",
        n_params=training["n_params"].values.astype(np.int64),
        run_scale=np.repeat(np.arange(n_scales), n_seeds),
        snapshots=snapshots,
        dropped=dropped,
        train_acc=train_acc,
        gini=training["gini_abs_theta"].values.reshape(n_scales * n_seeds, -1).astype(float),
        n_patterns=n_patterns,
        hidden=training["h"].values,
        config_toml=config_toml,
        real_topology=real_topology,
        topology_names=topologies,
    )


def _select_snapshots(path, size, valid, scale, run, *, epoch, source, topology, phase):
    """Keep valid snapshots with size > 0 and count the others."""
    if (size[valid == 1] < 0).any():
        _fail(path, "/avalanches/size has negative values on valid snapshots", "Re-create the file.")
    keep = (valid == 1) & (size > 0)
    dropped = {"invalid": int((valid != 1).sum()), "size_zero": int(((valid == 1) & (size == 0)).sum())}
    if not keep.any():
        _fail(path, "/avalanches has no valid snapshot with size > 0", "Check the probe settings (threshold, alpha).")
    if dropped["invalid"]:
        log.warning("%s: %d invalid snapshots left out", path, dropped["invalid"])
    if dropped["size_zero"]:
        log.info("%s: %d snapshots with size 0 left out (log size undefined)", path, dropped["size_zero"])
    chosen = size[keep].astype(float)
    return Snapshots(
        log_size=np.log(chosen),
        size=chosen,
        scale=scale[keep],
        run=run[keep],
        epoch=epoch[keep].astype(np.int64),
        source=source[keep].astype(np.int64),
        topology=topology[keep].astype(np.int64),
        phase=phase[keep],
    ), dropped


def _phase_codes(path: Path, variable: xr.DataArray) -> np.ndarray:
    values = variable.values
    if values.dtype.kind in "USO":
        names = np.asarray(values, dtype=str)
    else:
        meanings = variable.attrs.get("flag_meanings")
        if meanings is None:
            _fail(
                path,
                "/avalanches/phase holds integers without a flag_meanings attribute",
                "Store phase as strings 'pre', 'post', 'synthetic', or add CF flag_values and flag_meanings.",
            )
        lookup = dict(
            zip(variable.attrs.get("flag_values", range(len(meanings.split()))), meanings.split(), strict=False)
        )
        names = np.array([lookup.get(int(v), str(v)) for v in values])
    unknown = sorted(set(names) - set(PHASES))
    if unknown:
        _fail(path, f"/avalanches/phase has unknown labels {unknown}", f"Use only {list(PHASES)}.")
    return np.array([PHASES.index(name) for name in names], dtype=np.int64)


def _load_external(path: Path, tree: xr.DataTree) -> AnalysisInput:
    node = tree["avalanches"] if "avalanches" in tree.children else tree
    dataset = node.to_dataset().load()
    for name in ("n_params", "size"):
        if name not in dataset:
            _fail(
                path,
                f"variable /avalanches/{name} is missing",
                "An external file needs n_params and size along dim 'snapshot'; see docs/external-data.md.",
            )
        if dataset[name].dims != ("snapshot",):
            _fail(
                path,
                f"variable /avalanches/{name} has dims {dataset[name].dims}, expected ('snapshot',)",
                "Store one value per snapshot along dim 'snapshot'.",
            )
    size = dataset["size"].values.astype(float)
    n_params = dataset["n_params"].values
    if not np.isfinite(size).all():
        _fail(
            path,
            f"/avalanches/size has {int((~np.isfinite(size)).sum())} NaN or infinite values",
            "Drop those snapshots or mark them with valid = 0.",
        )
    if (n_params < 2).any():
        _fail(path, "/avalanches/n_params has values below 2", "n_params is the network size N of each snapshot.")

    scales, scale = np.unique(n_params, return_inverse=True)
    if len(scales) < 2:
        _fail(
            path,
            f"/avalanches/n_params has a single value ({scales[0]})",
            "A scaling exponent needs snapshots at two or more network sizes.",
        )
    if "run" in dataset:
        run_ids = np.stack([scale, dataset["run"].values.astype(np.int64)], axis=1)
        pairs, run = np.unique(run_ids, axis=0, return_inverse=True)
        run_scale = pairs[:, 0]
    else:
        run, run_scale = scale.copy(), np.arange(len(scales))
    phase = _phase_codes(path, dataset["phase"]) if "phase" in dataset else np.full(len(size), -1)
    valid = dataset["valid"].values if "valid" in dataset else np.ones(len(size), dtype=np.int8)
    source = (phase == PHASES.index("synthetic")).astype(np.int64)
    snapshots, dropped = _select_snapshots(
        path,
        size,
        valid,
        scale,
        run.ravel(),
        epoch=np.full(len(size), -1),
        source=source,
        topology=np.full(len(size), -1),
        phase=phase,
    )
    if "phase" not in dataset:
        log.info("%s has no phase variable; fitting a single phase named 'all'", path)
    return AnalysisInput(
        path=path,
        sha256=file_sha256(path),
        kind="external",
        n_params=scales.astype(np.int64),
        run_scale=np.asarray(run_scale, dtype=np.int64),
        snapshots=snapshots,
        dropped=dropped,
    )


__all__ = ["SOURCES", "AnalysisInput", "InputError", "Snapshots", "load_input"]
