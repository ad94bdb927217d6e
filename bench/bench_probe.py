"""Snapshots per second of the batched probe against a one-node-at-a-time reference.

    python bench/bench_probe.py [--nodes 2001] [--snapshots 200] [--reference-snapshots 20]

Both relax i.i.d. Gaussian snapshots on the same Barabasi-Albert graph with the
default threshold and alpha, and must give the same avalanche sizes. The batched
probe uses numba's threads (NUMBA_NUM_THREADS, by default one per core); the
line "batched, 1 thread" isolates the gain that does not come from threads.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from data_gen.graphs import build_graph, node_permutation
from data_gen.probe import probe


def reference_sizes(snapshots, graph, permutation, threshold=2.0, alpha=0.8) -> list[int]:
    """Relax each snapshot in plain Python: find nodes over threshold, topple them one by one."""
    neighbours = [graph.indices[graph.indptr[i] : graph.indptr[i + 1]].tolist() for i in range(graph.n_nodes)]
    sizes = []
    for snapshot in snapshots:
        magnitude = np.abs(snapshot)
        load = np.empty_like(magnitude)
        load[permutation] = magnitude / magnitude.mean()
        load = load.tolist()
        size = 0
        while True:
            over = [i for i, z in enumerate(load) if z >= threshold]
            if not over:
                break
            incoming = [0.0] * len(load)
            for i in over:
                share = alpha * load[i] / len(neighbours[i]) if neighbours[i] else 0.0
                for j in neighbours[i]:
                    incoming[j] += share
                load[i] = 0.0
            load = [z + extra for z, extra in zip(load, incoming, strict=True)]
            size += len(over)
        sizes.append(size)
    return sizes


def rate(function, count: int, repeats: int = 5) -> tuple[float, object]:
    """Best rate over ``repeats`` calls, as timeit reports, and the result of the last call."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return count / best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2001, help="graph size N (default: 2001)")
    parser.add_argument("--snapshots", type=int, default=200, help="snapshots for the batched probe (default: 200)")
    parser.add_argument(
        "--reference-snapshots",
        type=int,
        default=20,
        help="snapshots for the slow reference; its first ones are compared (default: 20)",
    )
    args = parser.parse_args()

    graph = build_graph("barabasi_albert", args.nodes, 4, 0.1, 0)
    permutation = node_permutation(args.nodes, 0, True)
    snapshots = np.random.default_rng(0).standard_normal((args.snapshots, args.nodes))
    probe(snapshots[:2], graph, permutation=permutation)  # compile the kernel outside the timing

    batched, result = rate(lambda: probe(snapshots, graph, permutation=permutation), args.snapshots)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    single, _ = rate(lambda: probe(snapshots, graph, permutation=permutation), args.snapshots)
    numba.set_num_threads(threads)
    count = min(args.reference_snapshots, args.snapshots)
    reference, sizes = rate(lambda: reference_sizes(snapshots[:count], graph, permutation), count, repeats=2)

    if list(result.size[:count]) != sizes:
        raise SystemExit("The batched probe and the reference disagree on avalanche sizes.")
    print(f"N = {args.nodes}, {args.snapshots} snapshots, sizes agree on the first {count}")
    print(f"{'method':<28} {'snapshots/s':>12} {'ratio':>8}")
    print(f"{'reference, one node a time':<28} {reference:>12,.1f} {1.0:>8.1f}")
    print(f"{'batched, 1 thread':<28} {single:>12,.0f} {single / reference:>8.0f}")
    print(f"{f'batched, {threads} threads':<28} {batched:>12,.0f} {batched / reference:>8.0f}")


if __name__ == "__main__":
    main()
