"""The avalanche probe: synchronous threshold toppling of gradient snapshots on a graph.

For one snapshot g in R^N on a graph with N nodes:

1. Place g_i on node perm(i) and set the load z = |g| / mean(|g|), so the probe
   does not depend on the overall gradient scale. An all-zero or non-finite
   snapshot is not relaxed and is recorded as invalid with its reason.
2. While some node has z_i >= z_c, every such node topples at once: it sends
   alpha * z_i / k_i to each of its k_i neighbours and its load becomes 0 (a
   node without neighbours just loses its load). Because alpha < 1 every
   toppling dissipates load, so relaxation ends; ``max_sweeps`` still caps it,
   and a capped relaxation is recorded as invalid.
3. Record size (topplings), area (distinct toppled nodes), duration (sweeps
   with at least one toppling), n_initial (nodes at or above z_c at the start)
   and optionally the node counts of the connected clusters of toppled nodes.

The kernel is compiled with numba and runs in parallel over snapshots. Each
snapshot is relaxed by one thread in a fixed order, so results do not depend
on the number of threads. This module imports no PyMC and no analysis code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from data_gen.graphs import Graph

# Integer codes of ``invalid_reason`` in the output file, in code order.
INVALID_REASONS = ("none", "all_zero", "non_finite", "sweep_limit")
REASON_CODE = {name: code for code, name in enumerate(INVALID_REASONS)}
UNRELAXED = -1  # size, area, duration and n_initial of a snapshot that was not relaxed


@dataclass
class AvalancheBatch:
    """Avalanche records of a batch of B snapshots; index b is snapshot b of the input."""

    size: np.ndarray  # (B,) int64, topplings; -1 where not relaxed
    area: np.ndarray  # (B,) int64, distinct toppled nodes
    duration: np.ndarray  # (B,) int64, sweeps with at least one toppling
    n_initial: np.ndarray  # (B,) int64, nodes at or above threshold before the first sweep
    invalid_reason: np.ndarray  # (B,) int8, code into INVALID_REASONS; 0 means valid
    cluster_sizes: list[np.ndarray] | None = None  # per snapshot, node counts of toppled clusters

    @property
    def valid(self) -> np.ndarray:
        return self.invalid_reason == REASON_CODE["none"]


def check_probe_parameters(threshold: float, alpha: float, max_sweeps: int) -> None:
    """Raise ValueError for parameters the toppling process does not allow."""
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold = {threshold} is invalid; the toppling threshold z_c must be finite and > 0.")
    if not 0 < alpha < 1:
        raise ValueError(
            f"alpha = {alpha} is invalid; it must be in (0, 1). With alpha >= 1 no load is dissipated "
            "and a relaxation need not end."
        )
    if max_sweeps < 1:
        raise ValueError(f"max_sweeps = {max_sweeps} is invalid; it must be >= 1.")


@numba.njit(parallel=True, cache=True)
def _relax_batch(loads, indptr, indices, relax, threshold, alpha, max_sweeps, record_clusters):  # pragma: no cover
    n_batch, n_nodes = loads.shape
    size = np.zeros(n_batch, np.int64)
    area = np.zeros(n_batch, np.int64)
    duration = np.zeros(n_batch, np.int64)
    n_initial = np.zeros(n_batch, np.int64)
    capped = np.zeros(n_batch, np.bool_)
    n_clusters = np.zeros(n_batch, np.int64)
    cluster_buffer = np.zeros((n_batch if record_clusters else 0, n_nodes), np.int64)

    for b in numba.prange(n_batch):
        if not relax[b]:
            continue
        z = loads[b].copy()
        incoming = np.zeros(n_nodes)
        toppled = np.zeros(n_nodes, np.bool_)

        count = 0
        for i in range(n_nodes):
            if z[i] >= threshold:
                count += 1
        n_initial[b] = count

        sweeps = 0
        topplings = 0
        distinct = 0
        while True:
            active = False
            for i in range(n_nodes):
                if z[i] >= threshold:
                    active = True
                    break
            if not active:
                break
            if sweeps == max_sweeps:
                capped[b] = True
                break

            # Every node at or above threshold topples on the loads of the previous sweep.
            incoming[:] = 0.0
            for i in range(n_nodes):
                load = z[i]
                if load >= threshold:
                    topplings += 1
                    if not toppled[i]:
                        toppled[i] = True
                        distinct += 1
                    degree = indptr[i + 1] - indptr[i]
                    if degree > 0:
                        share = alpha * load / degree
                        for edge in range(indptr[i], indptr[i + 1]):
                            incoming[indices[edge]] += share
                    z[i] = 0.0
            for i in range(n_nodes):
                z[i] += incoming[i]
            sweeps += 1

        size[b] = topplings
        area[b] = distinct
        duration[b] = sweeps

        if record_clusters:
            # Breadth-first search over toppled nodes; component sizes in order of their lowest node.
            seen = np.zeros(n_nodes, np.bool_)
            queue = np.empty(n_nodes, np.int64)
            found = 0
            for start in range(n_nodes):
                if not toppled[start] or seen[start]:
                    continue
                seen[start] = True
                queue[0] = start
                head, tail = 0, 1
                while head < tail:
                    node = queue[head]
                    head += 1
                    for edge in range(indptr[node], indptr[node + 1]):
                        neighbour = indices[edge]
                        if toppled[neighbour] and not seen[neighbour]:
                            seen[neighbour] = True
                            queue[tail] = neighbour
                            tail += 1
                cluster_buffer[b, found] = tail
                found += 1
            n_clusters[b] = found

    return size, area, duration, n_initial, capped, n_clusters, cluster_buffer


def normalised_loads(snapshots: np.ndarray, permutation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return loads z (B, N) placed on nodes, and the invalid-reason code of each snapshot."""
    snapshots = np.asarray(snapshots, dtype=np.float64)
    finite = np.isfinite(snapshots).all(axis=1)
    magnitude = np.abs(np.where(np.isfinite(snapshots), snapshots, 0.0))
    mean = magnitude.mean(axis=1)
    reason = np.full(len(snapshots), REASON_CODE["none"], dtype=np.int8)
    reason[mean == 0] = REASON_CODE["all_zero"]
    reason[~finite] = REASON_CODE["non_finite"]

    scale = np.where(reason == 0, mean, 1.0)
    loads_by_entry = magnitude / scale[:, None]
    if permutation is None:
        return loads_by_entry, reason
    loads = np.empty_like(loads_by_entry)
    loads[:, permutation] = loads_by_entry
    return loads, reason


def probe(
    snapshots: np.ndarray,
    graph: Graph,
    *,
    threshold: float = 2.0,
    alpha: float = 0.8,
    max_sweeps: int = 10_000,
    permutation: np.ndarray | None = None,
    record_clusters: bool = False,
) -> AvalancheBatch:
    """Relax each row of ``snapshots`` (B, N) on ``graph`` and return one avalanche per row.

    Invalid rows (all zero, any NaN or infinity) are recorded with their reason and
    never stop the batch. ``permutation[i]`` is the node that receives entry i.
    """
    check_probe_parameters(threshold, alpha, max_sweeps)
    snapshots = np.atleast_2d(np.asarray(snapshots))
    if snapshots.ndim != 2 or snapshots.shape[1] != graph.n_nodes:
        raise ValueError(
            f"snapshots have shape {snapshots.shape}, but the {graph.topology} graph has "
            f"{graph.n_nodes} nodes; pass a (B, {graph.n_nodes}) array."
        )
    if permutation is not None and not np.array_equal(np.sort(permutation), np.arange(graph.n_nodes)):
        raise ValueError(
            f"permutation (length {len(permutation)}) is not a permutation of 0..{graph.n_nodes - 1}; "
            "pass data_gen.graphs.node_permutation(N, seed, permute) or None."
        )

    loads, reason = normalised_loads(snapshots, permutation)
    relax = reason == REASON_CODE["none"]
    size, area, duration, n_initial, capped, n_clusters, buffer = _relax_batch(
        loads, graph.indptr, graph.indices, relax, float(threshold), float(alpha), int(max_sweeps), record_clusters
    )
    reason[capped] = REASON_CODE["sweep_limit"]
    for values in (size, area, duration, n_initial):
        values[~relax] = UNRELAXED

    clusters = None
    if record_clusters:
        clusters = [buffer[b, : n_clusters[b]].copy() for b in range(len(snapshots))]
    return AvalancheBatch(size, area, duration, n_initial, reason, clusters)
