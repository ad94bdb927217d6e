"""Simulated inputs with a known truth, shaped like the records that data_gen writes.

Used by the recovery tests: the simulator returns the truth beside the data, so a test
can check that each true value lies inside its posterior interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.inputs import AnalysisInput, Snapshots

SCALES = np.array([81, 129, 201, 317, 505, 797, 1265, 2001])


@dataclass(frozen=True)
class Truth:
    D: dict[str, float] = field(default_factory=lambda: {"pre": 0.9, "post": 1.2, "synthetic": 1.0})
    intercept: dict[str, float] = field(default_factory=lambda: {"pre": 4.0, "post": 4.3, "synthetic": 4.1})
    log_tau_mean: float = np.log(50.0)  # at the mean log N
    log_tau_slope: float = -0.4  # d log tau / d log N
    log_tau_sd: float = 0.2
    run_sd: float = 0.05  # run-to-run scatter of the mean log size
    snapshot_sd: float = 0.15  # scatter of log size within a run


def simulate_records(
    seed: int = 0,
    *,
    n_seeds: int = 16,
    epochs: int = 200,
    snapshot_every: int = 2,
    truth: Truth | None = None,
    n_params: np.ndarray = SCALES,
) -> tuple[AnalysisInput, Truth, np.ndarray]:
    """Return an AnalysisInput of records shape, the truth and each run's true tau.

    Accuracy is 0.5 before tau and 1.0 from tau on, with binomial noise over 4 patterns
    before tau. Log sizes are intercept + D (log N - mean log N) + run effect + noise, with
    the phase switching at tau; synthetic snapshots mirror each run's count.
    """
    truth = truth or Truth()
    rng = np.random.default_rng(seed)
    log_n = np.log(n_params.astype(float))
    x = log_n - log_n.mean()
    n_scales = len(n_params)
    run_scale = np.repeat(np.arange(n_scales), n_seeds)
    n_runs = len(run_scale)

    log_tau = rng.normal(truth.log_tau_mean + truth.log_tau_slope * x[run_scale], truth.log_tau_sd)
    tau = np.clip(np.rint(np.exp(log_tau)).astype(np.int64), 1, epochs - 1)
    epoch_grid = np.arange(epochs)
    pre = epoch_grid[None, :] < tau[:, None]
    train_acc = np.where(pre, rng.binomial(4, 0.5, size=(n_runs, epochs)) / 4, 1.0)
    gini = 0.3 + 0.1 * np.exp(-0.5 * ((epoch_grid[None, :] - tau[:, None] - 5) / 10.0) ** 2)

    snapshot_epochs = np.arange(0, epochs, snapshot_every)
    columns = {name: [] for name in ("log_size", "scale", "run", "epoch", "source")}
    for source in (0, 1):
        run = np.repeat(np.arange(n_runs), len(snapshot_epochs))
        epoch = np.tile(snapshot_epochs, n_runs)
        if source == 0:
            phase = np.where(epoch < tau[run], "pre", "post")
        else:
            phase = np.full(len(run), "synthetic")
        intercept = np.vectorize(truth.intercept.get)(phase)
        exponent = np.vectorize(truth.D.get)(phase)
        run_effect = rng.normal(0.0, truth.run_sd, size=(n_runs, 3))
        phase_index = np.searchsorted(np.array(["post", "pre", "synthetic"]), phase)
        log_size = (
            intercept
            + exponent * x[run_scale[run]]
            + run_effect[run, phase_index]
            + rng.normal(0.0, truth.snapshot_sd, size=len(run))
        )
        for name, values in (
            ("log_size", log_size),
            ("scale", run_scale[run]),
            ("run", run),
            ("epoch", epoch),
            ("source", np.full(len(run), source)),
        ):
            columns[name].append(values)
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    size = np.exp(merged["log_size"])
    snapshots = Snapshots(
        log_size=merged["log_size"],
        size=size,
        scale=merged["scale"],
        run=merged["run"],
        epoch=merged["epoch"],
        source=merged["source"],
        topology=np.zeros(len(size), dtype=np.int64),
        phase=np.full(len(size), -1, dtype=np.int64),
    )
    data = AnalysisInput(
        path=Path(f"<simulated seed {seed}>"),
        sha256="",
        kind="records",
        n_params=n_params.astype(np.int64),
        run_scale=run_scale,
        snapshots=snapshots,
        train_acc=train_acc,
        gini=gini,
        n_patterns=4,
        hidden=(n_params - 1) // 4,
        real_topology=0,
        topology_names=("barabasi_albert",),
    )
    return data, truth, tau
