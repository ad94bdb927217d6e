"""The batched toppling kernel against a one-node-at-a-time reference, and its guards."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from data_gen.config import TOPOLOGIES
from data_gen.graphs import build_graph, from_edges, node_permutation
from data_gen.probe import REASON_CODE, UNRELAXED, probe


def reference_avalanche(snapshot, neighbours, threshold, alpha, permutation):
    """Relax one snapshot with plain Python lists, one node at a time."""
    n = len(snapshot)
    magnitude = [abs(float(x)) for x in snapshot]
    mean = sum(magnitude) / n
    load = [0.0] * n
    for i in range(n):
        load[permutation[i]] = magnitude[i] / mean
    n_initial = sum(1 for z in load if z >= threshold)

    size, sweeps, toppled = 0, 0, set()
    while True:
        over = [i for i in range(n) if load[i] >= threshold]
        if not over:
            break
        incoming = [0.0] * n
        for i in over:
            for j in neighbours[i]:
                incoming[j] += alpha * load[i] / len(neighbours[i])
        for i in over:
            load[i] = 0.0
        for j in range(n):
            load[j] += incoming[j]
        size += len(over)
        toppled.update(over)
        sweeps += 1
    return size, len(toppled), sweeps, n_initial, toppled


def neighbour_lists(graph):
    return [list(graph.indices[graph.indptr[i] : graph.indptr[i + 1]]) for i in range(graph.n_nodes)]


def random_cases():
    rng = np.random.default_rng(20261204)
    for case in range(24):
        n = int(rng.integers(5, 70))
        if case % 2:
            nx_graph = nx.gnp_random_graph(n, float(rng.uniform(0.02, 0.3)), seed=case)
            graph = from_edges("random", n, np.array(nx_graph.edges(), dtype=np.int64))
        else:
            graph = build_graph(TOPOLOGIES[case // 2 % 5], n, 4, 0.1, case)
        kind = case % 3
        if kind == 0:
            snapshots = rng.standard_normal((6, n))
        elif kind == 1:
            snapshots = rng.standard_cauchy((6, n))
        else:
            snapshots = rng.standard_normal((6, n)) * (rng.random((6, n)) < 0.3)
            snapshots[:, 0] = 1.0  # no all-zero rows in this case
        threshold = float(rng.uniform(0.5, 3.0))
        alpha = float(rng.uniform(0.3, 0.95))
        yield case, graph, snapshots, threshold, alpha, node_permutation(n, case, case % 4 != 0)


@pytest.mark.parametrize("case, graph, snapshots, threshold, alpha, permutation", list(random_cases()))
def test_probe_matches_reference(case, graph, snapshots, threshold, alpha, permutation):
    batch = probe(snapshots, graph, threshold=threshold, alpha=alpha, permutation=permutation, record_clusters=True)
    neighbours = neighbour_lists(graph)

    for b, snapshot in enumerate(snapshots):
        size, area, duration, n_initial, toppled = reference_avalanche(
            snapshot, neighbours, threshold, alpha, permutation
        )
        assert batch.size[b] == size, f"case {case}, snapshot {b}: size"
        assert batch.area[b] == area, f"case {case}, snapshot {b}: area"
        assert batch.duration[b] == duration, f"case {case}, snapshot {b}: duration"
        assert batch.n_initial[b] == n_initial, f"case {case}, snapshot {b}: n_initial"

        induced = nx.Graph()
        induced.add_nodes_from(toppled)
        induced.add_edges_from((i, j) for i in toppled for j in neighbours[i] if j in toppled)
        expected = sorted(len(component) for component in nx.connected_components(induced))
        assert sorted(batch.cluster_sizes[b].tolist()) == expected, f"case {case}, snapshot {b}: clusters"
    assert batch.valid.all()


def test_probe_scale_invariant():
    rng = np.random.default_rng(1)
    graph = build_graph("barabasi_albert", 505, 4, 0.1, 0)
    snapshots = rng.standard_normal((200, 505))
    permutation = node_permutation(505, 0, True)

    small = probe(snapshots, graph, permutation=permutation)
    large = probe(10 * snapshots, graph, permutation=permutation)

    np.testing.assert_array_equal(small.size, large.size)
    np.testing.assert_array_equal(small.area, large.area)
    np.testing.assert_array_equal(small.duration, large.duration)
    np.testing.assert_array_equal(small.n_initial, large.n_initial)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_gaussian_mean_size_scales_linearly(topology):
    rng = np.random.default_rng(2)
    sizes = np.array([81, 129, 201, 317, 505, 797, 1265, 2001])
    means = []
    for n in sizes:
        graph = build_graph(topology, int(n), 4, 0.1, 0)
        batch = probe(rng.standard_normal((300, n)), graph, permutation=node_permutation(int(n), 0, True))
        means.append(batch.size.mean())
    slope = np.polyfit(np.log(sizes), np.log(means), 1)[0]
    assert abs(slope - 1.0) < 0.05, f"{topology}: slope {slope:.3f}, mean sizes {np.round(means, 1)}"


def test_invalid_snapshots_recorded_not_raised():
    graph = build_graph("ring_lattice", 50, 4, 0.0, 0)
    snapshots = np.random.default_rng(3).standard_normal((4, 50))
    snapshots[1] = 0.0
    snapshots[2, 7] = np.nan
    snapshots[3, 9] = np.inf

    batch = probe(snapshots, graph)

    assert batch.invalid_reason.tolist() == [
        REASON_CODE["none"],
        REASON_CODE["all_zero"],
        REASON_CODE["non_finite"],
        REASON_CODE["non_finite"],
    ]
    assert batch.valid.tolist() == [True, False, False, False]
    assert batch.size[0] >= 0
    assert (batch.size[1:] == UNRELAXED).all()
    assert (batch.duration[1:] == UNRELAXED).all()


@pytest.mark.parametrize("alpha", [1.0, 1.5, 0.0, -0.2])
def test_alpha_outside_unit_interval_rejected(alpha):
    graph = build_graph("ring_lattice", 20, 4, 0.0, 0)
    with pytest.raises(ValueError, match=r"alpha = .* must be in \(0, 1\)"):
        probe(np.ones((1, 20)), graph, alpha=alpha)


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan")])
def test_nonpositive_threshold_rejected(threshold):
    graph = build_graph("ring_lattice", 20, 4, 0.0, 0)
    with pytest.raises(ValueError, match="threshold .* must be finite and > 0"):
        probe(np.ones((1, 20)), graph, threshold=threshold)


def test_near_conservative_relaxation_hits_sweep_limit():
    # On a ring that passes on all but 1e-9 of each toppling's load, a threshold of 1e-6 is
    # crossed for millions of sweeps, so only the sweep limit ends the relaxation.
    graph = build_graph("ring_lattice", 30, 2, 0.0, 0)
    snapshots = np.random.default_rng(4).standard_normal((3, 30))
    batch = probe(snapshots, graph, threshold=1e-6, alpha=1 - 1e-9, max_sweeps=50)

    assert (batch.invalid_reason == REASON_CODE["sweep_limit"]).all()
    assert not batch.valid.any()
    assert (batch.duration == 50).all()

    regular = probe(snapshots, graph, threshold=2.0, alpha=0.8, max_sweeps=50)
    assert regular.valid.all()


def test_edgeless_graph_loses_load():
    graph = from_edges("empty", 10, np.zeros((0, 2), dtype=np.int64))
    snapshot = np.array([[5.0, 1, 1, 1, 1, 1, 1, 1, 1, 0]])
    batch = probe(snapshot, graph, threshold=2.0, alpha=0.8)

    assert batch.n_initial[0] == 1
    assert batch.size[0] == 1
    assert batch.duration[0] == 1


def test_wrong_snapshot_width_rejected():
    graph = build_graph("ring_lattice", 20, 4, 0.0, 0)
    with pytest.raises(ValueError, match=r"shape \(2, 21\).*20 nodes"):
        probe(np.ones((2, 21)), graph)
