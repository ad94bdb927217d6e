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
from typing import NamedTuple

import numba
import numpy as np

from data_gen.graphs import Graph

# Integer codes of ``invalid_reason`` in the output file, in code order.
INVALID_REASONS = ("none", "all_zero", "non_finite", "sweep_limit")
REASON_CODE = {name: code for code, name in enumerate(INVALID_REASONS)}
UNRELAXED = -1  # size, area, duration and n_initial of a snapshot that was not relaxed
VALID, ALL_ZERO, NON_FINITE, SWEEP_LIMIT = (REASON_CODE[name] for name in INVALID_REASONS)


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


class _Scratch(NamedTuple):
    """Per-thread work arrays of length N, reused across the snapshots of one chunk."""

    load: np.ndarray  # float64
    incoming: np.ndarray  # float64, all zero between sweeps
    share: np.ndarray  # float64, load sent to each neighbour by the k-th active node
    toppled: np.ndarray  # bool, reset after each snapshot
    touched: np.ndarray  # bool, all False between sweeps
    active: np.ndarray  # int64, nodes that topple in this sweep
    candidates: np.ndarray  # int64, nodes that received load in this sweep
    toppled_nodes: np.ndarray  # int64, distinct toppled nodes in order of first toppling
    queue: np.ndarray  # int64, breadth-first search queue for clusters


@numba.njit(cache=True)
def _new_scratch(n_nodes):  # pragma: no cover - compiled
    return _Scratch(
        np.empty(n_nodes),
        np.zeros(n_nodes),
        np.empty(n_nodes),
        np.zeros(n_nodes, np.bool_),
        np.zeros(n_nodes, np.bool_),
        np.empty(n_nodes, np.int64),
        np.empty(n_nodes, np.int64),
        np.empty(n_nodes, np.int64),
        np.empty(n_nodes, np.int64),
    )


@numba.njit(cache=True)
def _place_load(snapshot, permutation, load):  # pragma: no cover - compiled
    """Write |g_i| / mean|g| to load[permutation[i]]; return the invalid-reason code."""
    n_nodes = len(snapshot)
    total = 0.0
    for i in range(n_nodes):
        value = float(snapshot[i])
        if not np.isfinite(value):
            return NON_FINITE
        total += abs(value)
    if total == 0.0:
        return ALL_ZERO
    mean = total / n_nodes
    for i in range(n_nodes):
        load[permutation[i]] = abs(float(snapshot[i])) / mean
    return VALID


@numba.njit(cache=True)
def _relax_one(scratch, indptr, indices, threshold, alpha, max_sweeps):  # pragma: no cover - compiled
    """Relax scratch.load in place; return (size, area, duration, n_initial, capped)."""
    load, incoming, share = scratch.load, scratch.incoming, scratch.share
    toppled, touched = scratch.toppled, scratch.touched
    active, candidates, toppled_nodes = scratch.active, scratch.candidates, scratch.toppled_nodes

    n_active = 0
    for i in range(len(load)):
        if load[i] >= threshold:
            active[n_active] = i
            n_active += 1
    n_initial = n_active

    sweeps, size, area, capped = 0, 0, 0, False
    while n_active > 0:
        if sweeps == max_sweeps:
            capped = True
            break

        # Every active node topples on the loads of the previous sweep. Ascending node order
        # sums incoming load in the same order as a plain node-by-node loop.
        active[:n_active].sort()
        for k in range(n_active):
            i = active[k]
            degree = indptr[i + 1] - indptr[i]
            share[k] = alpha * load[i] / degree if degree > 0 else 0.0
            load[i] = 0.0
            size += 1
            if not toppled[i]:
                toppled[i] = True
                toppled_nodes[area] = i
                area += 1

        # Only nodes that receive load can be at or above threshold in the next sweep.
        n_candidates = 0
        for k in range(n_active):
            i = active[k]
            for edge in range(indptr[i], indptr[i + 1]):
                j = indices[edge]
                incoming[j] += share[k]
                if not touched[j]:
                    touched[j] = True
                    candidates[n_candidates] = j
                    n_candidates += 1
        n_active = 0
        for k in range(n_candidates):
            j = candidates[k]
            load[j] += incoming[j]
            incoming[j] = 0.0
            touched[j] = False
            if load[j] >= threshold:
                active[n_active] = j
                n_active += 1
        sweeps += 1

    return size, area, sweeps, n_initial, capped


@numba.njit(cache=True)
def _cluster_sizes(scratch, area, indptr, indices, out):  # pragma: no cover - compiled
    """Write node counts of connected clusters of toppled nodes to out; return their number."""
    toppled, seen, queue = scratch.toppled, scratch.touched, scratch.queue
    found = 0
    for k in range(area):
        start = scratch.toppled_nodes[k]
        if seen[start]:
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
        out[found] = tail
        found += 1
    for k in range(area):
        seen[scratch.toppled_nodes[k]] = False
    return found


@numba.njit(parallel=True, cache=True)
def _relax_batch(snapshots, permutation, indptr, indices, threshold, alpha, max_sweeps, record_clusters, n_chunks):
    n_batch, n_nodes = snapshots.shape
    reason = np.zeros(n_batch, np.int8)
    size = np.full(n_batch, UNRELAXED, np.int64)
    area = np.full(n_batch, UNRELAXED, np.int64)
    duration = np.full(n_batch, UNRELAXED, np.int64)
    n_initial = np.full(n_batch, UNRELAXED, np.int64)
    n_clusters = np.zeros(n_batch, np.int64)
    cluster_buffer = np.zeros((n_batch if record_clusters else 0, n_nodes), np.int64)

    # Each chunk of snapshots reuses one set of work arrays. A snapshot's result does not
    # depend on its chunk, so the output does not depend on the number of threads.
    for chunk in numba.prange(n_chunks):
        scratch = _new_scratch(n_nodes)
        for b in range(chunk * n_batch // n_chunks, (chunk + 1) * n_batch // n_chunks):
            reason[b] = _place_load(snapshots[b], permutation, scratch.load)
            if reason[b] != VALID:
                continue
            size[b], area[b], duration[b], n_initial[b], capped = _relax_one(
                scratch, indptr, indices, threshold, alpha, max_sweeps
            )
            if capped:
                reason[b] = SWEEP_LIMIT
            if record_clusters:
                n_clusters[b] = _cluster_sizes(scratch, area[b], indptr, indices, cluster_buffer[b])
            for k in range(area[b]):
                scratch.toppled[scratch.toppled_nodes[k]] = False
            if capped:
                # A capped relaxation stops between sweeps with load still pending.
                scratch.incoming[:] = 0.0

    return size, area, duration, n_initial, reason, n_clusters, cluster_buffer


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

    if snapshots.dtype not in (np.float32, np.float64):
        snapshots = snapshots.astype(np.float64)
    if permutation is None:
        permutation = np.arange(graph.n_nodes)
    n_chunks = max(1, min(len(snapshots), 8 * numba.get_num_threads()))
    size, area, duration, n_initial, reason, n_clusters, buffer = _relax_batch(
        np.ascontiguousarray(snapshots),
        np.asarray(permutation, dtype=np.int64),
        graph.indptr,
        graph.indices,
        float(threshold),
        float(alpha),
        int(max_sweeps),
        bool(record_clusters),
        n_chunks,
    )

    clusters = None
    if record_clusters:
        clusters = [buffer[b, : n_clusters[b]].copy() for b in range(len(snapshots))]
    return AvalancheBatch(size, area, duration, n_initial, reason, clusters)
