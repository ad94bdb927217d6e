"""Graphs for the avalanche probe, as symmetric CSR adjacency arrays.

Five families share one mean degree k (``ProbeConfig.mean_degree``):

- ``barabasi_albert``: preferential attachment with m = k / 2 edges per new node;
- ``erdos_renyi``: G(N, p) with p = k / (N - 1), so isolated nodes may occur;
- ``watts_strogatz``: ring with k neighbours, each edge rewired with probability p;
- ``random_regular``: every node has degree k;
- ``ring_lattice``: each node joined to its k / 2 nearest neighbours on each side.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class Graph:
    """Undirected graph on nodes 0..n-1 in CSR form."""

    topology: str
    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (2 * edges,) int64, neighbours of node i in indices[indptr[i]:indptr[i+1]]

    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)


def from_edges(topology: str, n_nodes: int, edges: np.ndarray) -> Graph:
    """Build a Graph from an (E, 2) array of undirected edges; self-loops and repeats are dropped."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    edges = edges[edges[:, 0] != edges[:, 1]]
    both = np.concatenate([edges, edges[:, ::-1]])
    both = np.unique(both, axis=0)
    counts = np.bincount(both[:, 0], minlength=n_nodes)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Graph(topology, indptr, both[:, 1].astype(np.int64))


def _networkx_graph(topology: str, n: int, mean_degree: int, rewire: float, seed: int) -> nx.Graph:
    half = mean_degree // 2
    if topology == "barabasi_albert":
        return nx.barabasi_albert_graph(n, half, seed=seed)
    if topology == "erdos_renyi":
        return nx.fast_gnp_random_graph(n, mean_degree / (n - 1), seed=seed)
    if topology == "watts_strogatz":
        return nx.watts_strogatz_graph(n, mean_degree, rewire, seed=seed)
    if topology == "random_regular":
        return nx.random_regular_graph(mean_degree, n, seed=seed)
    if topology == "ring_lattice":
        return nx.watts_strogatz_graph(n, mean_degree, 0.0)
    raise ValueError(f"Unknown topology {topology!r}.")


@lru_cache(maxsize=64)
def build_graph(topology: str, n_nodes: int, mean_degree: int, rewire_probability: float, seed: int) -> Graph:
    """Build (once per process and argument set) the graph of one family on ``n_nodes`` nodes."""
    if n_nodes <= mean_degree:
        raise ValueError(
            f"A {topology} graph with mean degree {mean_degree} needs more than {mean_degree} nodes, "
            f"got {n_nodes}; use a larger network or a smaller probe.mean_degree."
        )
    graph = _networkx_graph(topology, n_nodes, mean_degree, rewire_probability, seed)
    edges = np.array(graph.edges(), dtype=np.int64).reshape(-1, 2)
    return from_edges(topology, n_nodes, edges)


def node_permutation(n_nodes: int, seed: int, permute: bool) -> np.ndarray:
    """Node that receives gradient entry i: a seeded random permutation, or the identity."""
    if not permute:
        return np.arange(n_nodes)
    return np.random.default_rng([seed, n_nodes]).permutation(n_nodes)
