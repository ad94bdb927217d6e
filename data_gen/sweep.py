"""Run a whole experiment as shards: train, probe, write shard files, merge them.

A shard is one block of runs at one width: it trains them, probes every
gradient snapshot on the configured graph, probes as many i.i.d. Gaussian
snapshots on each synthetic topology, and writes ``<out>.shards/<name>.nc``
atomically. A shard's content depends only on the configuration and its run
indices, so shards may run in-process or as Dask tasks in any order, and the
merged file is the same. The merged file is written atomically at the end, and
the shard folder is removed once it is in place.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from data_gen.config import TOPOLOGIES, ExperimentConfig, config_hash, config_to_toml
from data_gen.graphs import build_graph, node_permutation
from data_gen.probe import AvalancheBatch, probe
from data_gen.provenance import git_revision, package_versions_json
from data_gen.records import avalanche_dataset, cluster_sizes, training_dataset, write_records
from data_gen.schema import AVALANCHES, SOURCES
from data_gen.tasks import get_task
from data_gen.training import METRICS, train_runs

log = logging.getLogger(__name__)

RAGGED = ("cluster_count", "cluster_size")  # rebuilt from per-snapshot lists when merging
SYNTHETIC_STREAM = 7  # separates the synthetic-snapshot random stream from the initialisation stream


@dataclass(frozen=True)
class Shard:
    scale: int  # index into training.hidden
    runs: tuple[int, ...]  # run indices trained together

    @property
    def name(self) -> str:
        return f"shard-{self.scale:02d}-{self.runs[0]:06d}"


@dataclass(frozen=True)
class ShardStats:
    name: str
    seconds: float
    snapshots: int
    invalid: int


def plan_shards(config: ExperimentConfig) -> list[Shard]:
    """List all shards of an experiment, in the order the merged file lists them."""
    block = config.sweep.seeds_per_shard
    runs = range(config.training.seeds)
    return [
        Shard(scale, tuple(runs[start : start + block]))
        for scale in range(len(config.training.hidden))
        for start in range(0, config.training.seeds, block)
    ]


def shard_folder(out: Path) -> Path:
    return out.with_name(out.name + ".shards")


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    # One intra-op thread keeps float reductions in a fixed order, so results do not
    # depend on the machine or on whether the shard runs in a Dask worker.
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _probe_on(snapshots: np.ndarray, topology: str, config: ExperimentConfig) -> AvalancheBatch:
    p = config.probe
    n_nodes = snapshots.shape[1]
    graph = build_graph(topology, n_nodes, p.mean_degree, p.rewire_probability, p.graph_seed)
    return probe(
        snapshots,
        graph,
        threshold=p.threshold,
        alpha=p.alpha,
        max_sweeps=p.max_sweeps,
        permutation=node_permutation(n_nodes, p.graph_seed, p.permute_nodes),
        record_clusters=p.record_clusters,
    )


def synthetic_snapshots(
    config: ExperimentConfig, hidden: int, run: int, topology: str, shape: tuple[int, int]
) -> np.ndarray:
    """I.i.d. standard Gaussian snapshots paired with one run's real ones on one topology."""
    stream = [config.sweep.seed, hidden, run, SYNTHETIC_STREAM, TOPOLOGIES.index(topology)]
    return np.random.default_rng(stream).standard_normal(shape)


def compute_shard(config: ExperimentConfig, shard: Shard, folder: Path) -> ShardStats:
    """Train, probe and write one shard file; return its timing and counts."""
    started = time.perf_counter()
    task = get_task(config.training.task)
    hidden = config.training.hidden[shard.scale]
    runs = np.asarray(shard.runs)

    # 1. Train all runs of the shard together.
    with _torch_threads(1):
        result = train_runs(task, hidden, runs, config.training, config.sweep.seed)
    n_runs, n_snap, n_params = result.snapshots.shape

    # 2. Probe the real snapshots, then the synthetic control on each topology.
    batches = [("real", config.probe.topology, result.snapshots.reshape(n_runs * n_snap, n_params))]
    if config.synthetic.enabled:
        for topology in config.synthetic.topologies:
            gaussian = np.concatenate(
                [synthetic_snapshots(config, hidden, int(run), topology, (n_snap, n_params)) for run in runs]
            )
            batches.append(("synthetic", topology, gaussian))

    columns: dict[str, list[np.ndarray]] = {}
    clusters: list[np.ndarray] = []
    for source, topology, snapshots in batches:
        avalanches = _probe_on(snapshots, topology, config)
        count = len(snapshots)
        block = {
            "source": np.full(count, SOURCES.index(source)),
            "topology": np.full(count, TOPOLOGIES.index(topology)),
            "scale": np.full(count, shard.scale),
            "h": np.full(count, hidden),
            "n_params": np.full(count, n_params),
            "seed": np.repeat(runs, n_snap),
            "epoch": np.tile(result.snapshot_epochs, n_runs),
            "size": avalanches.size,
            "area": avalanches.area,
            "duration": avalanches.duration,
            "n_initial": avalanches.n_initial,
            "valid": avalanches.valid,
            "invalid_reason": avalanches.invalid_reason,
        }
        for name, values in block.items():
            columns.setdefault(name, []).append(values)
        if avalanches.cluster_sizes is not None:
            clusters.extend(avalanches.cluster_sizes)

    # 3. Write the shard atomically; its attributes tie it to this configuration.
    metrics = {name: result.metrics[name][None] for name in METRICS}
    training = training_dataset([hidden], [n_params], runs, config.training.epochs, metrics, result.grok_epoch[None])
    merged_columns = {name: np.concatenate(parts) for name, parts in columns.items()}
    avalanches = avalanche_dataset(merged_columns, clusters if config.probe.record_clusters else None)
    attrs = {"config_hash": config_hash(config), "shard": shard.name}
    write_records(folder / f"{shard.name}.nc", training, avalanches, attrs)

    invalid = int((merged_columns["valid"] == 0).sum())
    return ShardStats(shard.name, time.perf_counter() - started, len(merged_columns["size"]), invalid)


def is_complete(path: Path, config: ExperimentConfig, shard: Shard) -> tuple[bool, str]:
    """Check whether a shard file on disk can be reused; return that flag and the reason."""
    if not path.exists():
        return False, "missing"
    try:
        with xr.open_datatree(path, engine="netcdf4") as tree:
            attrs = dict(tree.attrs)
            groups = set(tree.children)
    except (OSError, ValueError, RuntimeError) as error:
        return False, f"unreadable ({error})"
    if groups != {"training", "avalanches"}:
        return False, f"groups {sorted(groups)} instead of ['avalanches', 'training']"
    if attrs.get("config_hash") != config_hash(config) or attrs.get("shard") != shard.name:
        return False, "written by another configuration"
    return True, "complete"


def _run_pending(pending: list[Shard], config: ExperimentConfig, folder: Path, client, bar) -> None:
    def report(stats: ShardStats) -> None:
        bar.update(1)
        log.info(
            "shard %s done in %.1f s: %d snapshots, %d invalid",
            stats.name,
            stats.seconds,
            stats.snapshots,
            stats.invalid,
        )

    if client is None:
        for shard in pending:
            report(compute_shard(config, shard, folder))
        return

    from dask.distributed import as_completed

    futures = [client.submit(compute_shard, config, shard, folder, pure=False) for shard in pending]
    for future in as_completed(futures):
        report(future.result())


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None):
    """Yield a Dask client on a new loopback LocalCluster or an existing scheduler, or None (in-process)."""
    if not workers and not scheduler:
        yield None
        return
    from dask.distributed import Client, LocalCluster

    if scheduler:
        log.info("connecting to the Dask scheduler at %s", scheduler)
        with Client(scheduler) as client:
            yield client
        return
    log.info("starting a Dask LocalCluster with %d worker processes on 127.0.0.1", workers)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def merge_shards(config: ExperimentConfig, shards: list[Shard], folder: Path) -> tuple[xr.Dataset, xr.Dataset]:
    """Read the shard files in plan order and assemble the two groups of the final file."""
    t = config.training
    n_scales, n_seeds = len(t.hidden), t.seeds
    metrics = {name: np.empty((n_scales, n_seeds, t.epochs), np.float32) for name in METRICS}
    grok_epoch = np.empty((n_scales, n_seeds), np.int32)
    n_params = np.empty(n_scales, np.int64)
    columns: dict[str, list[np.ndarray]] = {}
    clusters: list[np.ndarray] = []

    for shard in shards:
        with xr.open_datatree(folder / f"{shard.name}.nc", engine="netcdf4") as tree:
            training = tree["training"].to_dataset().load()
            part = tree["avalanches"].to_dataset().load()
        runs = list(shard.runs)
        for name in METRICS:
            metrics[name][shard.scale, runs] = training[name].values[0]
        grok_epoch[shard.scale, runs] = training["grok_epoch"].values[0]
        n_params[shard.scale] = int(training["n_params"].values[0])
        for name in AVALANCHES:
            if name in part.variables and name not in RAGGED:
                columns.setdefault(name, []).append(part[name].values)
        if "cluster_count" in part:
            clusters.extend(cluster_sizes(part))

    training = training_dataset(t.hidden, n_params, np.arange(n_seeds), t.epochs, metrics, grok_epoch)
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    return training, avalanche_dataset(merged, clusters if config.probe.record_clusters else None)


def file_attributes(config: ExperimentConfig) -> dict[str, str]:
    return {
        "title": f"Gradient avalanches of {config.training.task} networks ({config.name})",
        "Conventions": "CF-1.10",
        "source": "data_gen: batched MLP training and threshold-toppling probe",
        "config_toml": config_to_toml(config),
        "config_hash": config_hash(config),
        "package_versions": package_versions_json(),
        "git_revision": git_revision(),
    }


def summarise(training: xr.Dataset, avalanches: xr.Dataset) -> str:
    """Summarise a run in one line: runs, fraction grokked per scale, snapshots probed, invalid snapshots."""
    grokked = (training["grok_epoch"] >= 0).mean("seed").values
    per_scale = ", ".join(f"h={h}: {fraction:.2f}" for h, fraction in zip(training["h"].values, grokked, strict=True))
    invalid = int((avalanches["valid"] == 0).sum())
    runs = training.sizes["scale"] * training.sizes["seed"]
    return (
        f"{runs} runs; fraction grokked per scale [{per_scale}]; "
        f"{avalanches.sizes['snapshot']} snapshots probed; {invalid} invalid"
    )


def _finished_earlier(out: Path, config: ExperimentConfig) -> bool:
    if not out.is_file():
        return False
    try:
        with xr.open_datatree(out, engine="netcdf4") as tree:
            return tree.attrs.get("config_hash") == config_hash(config)
    except (OSError, ValueError, RuntimeError):
        return False


def run_sweep(
    config: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    keep_shards: bool = False,
    progress: bool = True,
) -> Path:
    """Run every shard, merge them into ``out`` atomically and return its path."""
    out = Path(out)
    folder = shard_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(config)
    log.info(
        "start: preset %s, %d scales x %d seeds, %d epochs, %d shards -> %s",
        config.name,
        len(config.training.hidden),
        config.training.seeds,
        config.training.epochs,
        len(shards),
        out,
    )

    if resume and _finished_earlier(out, config):
        log.info("resume: %s is already complete for this configuration; nothing to do", out)
        return out
    leftovers = sorted(folder.glob("shard-*.nc"))
    if leftovers and not resume:
        log.info(
            "found %d shard files of an earlier run in %s; recomputing them (pass --resume to reuse)",
            len(leftovers),
            folder,
        )

    # Resume decision: reuse only shard files that are complete and match this configuration.
    pending = []
    for shard in shards:
        path = folder / f"{shard.name}.nc"
        if resume:
            complete, reason = is_complete(path, config, shard)
            if complete:
                log.debug("resume: reusing %s", path.name)
                continue
            if reason != "missing":
                log.info("resume: recomputing %s because it is %s", path.name, reason)
        pending.append(shard)
    if resume:
        log.info(
            "resume: %d of %d shards complete, %d to compute", len(shards) - len(pending), len(shards), len(pending)
        )

    with (
        tqdm(
            total=len(shards),
            initial=len(shards) - len(pending),
            desc="train + probe",
            unit="shard",
            disable=not progress,
        ) as bar,
        dask_client(workers, scheduler) as client,
    ):
        _run_pending(pending, config, folder, client, bar)

    training, avalanches = merge_shards(config, shards, folder)
    write_records(out, training, avalanches, file_attributes(config))
    if not keep_shards:
        for shard in shards:
            (folder / f"{shard.name}.nc").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
    log.info("end: wrote %s; %s", out, summarise(training, avalanches))
    return out
