"""Batched training of many n_inputs-h-1 MLPs with hand-written backpropagation.

All runs of one width train together: the parameters of run r are row r of a
flat ``theta`` tensor of shape (runs, N), laid out as [W1 (h x n_inputs, row
major), b1 (h), w2 (h), b2 (1)]. One epoch is one full-batch step of heavy-ball
SGD on the mean binary cross-entropy. Metrics and gradient snapshots are taken
at the parameters before the epoch's update, so the snapshot of epoch t is the
gradient that step t applies.

This module imports no analysis code and no probe code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data_gen.config import TrainingConfig, snapshot_epochs
from data_gen.tasks import Task

METRICS = ("train_acc", "eval_acc", "train_loss", "eval_loss", "grad_norm", "gini_abs_theta")


@dataclass
class TrainingResult:
    """Per-run curves and gradient snapshots of one batch of runs at one width."""

    metrics: dict[str, np.ndarray]  # name -> (runs, epochs) float64
    snapshots: np.ndarray  # (runs, n_snapshots, N) gradients at the snapshot epochs
    snapshot_epochs: np.ndarray  # (n_snapshots,) int
    grok_epoch: np.ndarray  # (runs,) int, first epoch from which train accuracy stays solved; -1 if never


def run_seed(root_seed: int, hidden: int, run: int) -> int:
    """Seed of one run, derived from (root seed, width, run index) only."""
    return int(np.random.SeedSequence([root_seed, hidden, run]).generate_state(1, dtype=np.uint64)[0] >> 1)


def init_parameters(task: Task, hidden: int, runs: np.ndarray, config: TrainingConfig, root_seed: int) -> torch.Tensor:
    """Draw theta (len(runs), N): weights ~ N(0, init_scale^2 / fan_in), biases zero."""
    dtype = getattr(torch, config.dtype)
    d = task.n_inputs
    theta = torch.zeros(len(runs), task.n_params(hidden), dtype=dtype)
    # One generator per run, so a run's initial state does not depend on which shard trains it.
    for row, run in enumerate(runs):
        generator = torch.Generator().manual_seed(run_seed(root_seed, hidden, int(run)))
        w1 = torch.randn(hidden * d, generator=generator, dtype=dtype) * (config.init_scale / d**0.5)
        w2 = torch.randn(hidden, generator=generator, dtype=dtype) * (config.init_scale / hidden**0.5)
        theta[row, : hidden * d] = w1
        theta[row, hidden * d + hidden : hidden * d + 2 * hidden] = w2
    return theta


def _activation(pre: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the activation and its derivative at ``pre``."""
    if name == "tanh":
        a = torch.tanh(pre)
        return a, 1.0 - a * a
    a = torch.relu(pre)
    return a, (pre > 0).to(pre.dtype)


def loss_and_gradient(
    theta: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, hidden: int, activation: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean BCE loss (runs,), accuracy (runs,) and gradient (runs, N) for every run at once."""
    runs, _ = theta.shape
    n_patterns, d = inputs.shape
    x = inputs.to(theta.dtype)
    y = targets.to(theta.dtype)

    w1 = theta[:, : hidden * d].view(runs, hidden, d)
    b1 = theta[:, hidden * d : hidden * d + hidden]
    w2 = theta[:, hidden * d + hidden : hidden * d + 2 * hidden]
    b2 = theta[:, -1]

    # 1. Forward pass: pre and a are (runs, h, patterns), out is (runs, patterns).
    pre = torch.matmul(w1, x.T) + b1[:, :, None]
    a, da_dpre = _activation(pre, activation)
    out = torch.matmul(w2[:, None, :], a).squeeze(1) + b2[:, None]
    loss = (torch.nn.functional.softplus(out) - y * out).mean(dim=1)
    accuracy = ((out > 0).to(theta.dtype) == y).to(theta.dtype).mean(dim=1)

    # 2. Backward pass of the mean loss.
    d_out = (torch.sigmoid(out) - y) / n_patterns  # (runs, patterns)
    grad_b2 = d_out.sum(dim=1, keepdim=True)  # (runs, 1)
    grad_w2 = torch.matmul(a, d_out[:, :, None]).squeeze(-1)  # (runs, h)
    d_pre = w2[:, :, None] * d_out[:, None, :] * da_dpre  # (runs, h, patterns)
    grad_w1 = torch.matmul(d_pre, x).reshape(runs, hidden * d)  # (runs, h * d)
    grad_b1 = d_pre.sum(dim=2)  # (runs, h)
    gradient = torch.cat([grad_w1, grad_b1, grad_w2, grad_b2], dim=1)
    return loss, accuracy, gradient


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of each row of a non-negative (runs, N) tensor; 0 for an all-zero row."""
    n = values.shape[1]
    ordered, _ = torch.sort(values, dim=1)
    rank = torch.arange(1, n + 1, dtype=values.dtype)
    total = ordered.sum(dim=1)
    weighted = (ordered * (2 * rank - n - 1)).sum(dim=1)
    return torch.where(total > 0, weighted / (n * total), torch.zeros_like(total))


def first_solved_epoch(train_acc: np.ndarray, solved_accuracy: float) -> np.ndarray:
    """First epoch from which accuracy stays at or above ``solved_accuracy``, per row; -1 if never."""
    solved = train_acc >= solved_accuracy
    # A suffix stays solved when the reversed cumulative product is still 1.
    stays_solved = np.flip(np.cumprod(np.flip(solved, axis=1), axis=1), axis=1).astype(bool)
    first = np.argmax(stays_solved, axis=1)
    return np.where(stays_solved.any(axis=1), first, -1)


def train_runs(task: Task, hidden: int, runs: np.ndarray, config: TrainingConfig, root_seed: int) -> TrainingResult:
    """Train ``len(runs)`` networks of width ``hidden`` together and record their curves."""
    theta = init_parameters(task, hidden, runs, config, root_seed)
    velocity = torch.zeros_like(theta)
    epochs = config.epochs
    take = snapshot_epochs(config)
    n_runs, n_params = theta.shape

    curves = {name: torch.empty(n_runs, epochs, dtype=torch.float64) for name in METRICS}
    snapshots = torch.empty(n_runs, len(take), n_params, dtype=theta.dtype)
    next_snapshot = 0

    for epoch in range(epochs):
        loss, accuracy, gradient = loss_and_gradient(
            theta, task.train_inputs, task.train_targets, hidden, config.activation
        )
        curves["train_loss"][:, epoch] = loss
        curves["train_acc"][:, epoch] = accuracy
        if task.eval_is_train:
            curves["eval_loss"][:, epoch] = loss
            curves["eval_acc"][:, epoch] = accuracy
        else:
            eval_loss, eval_acc, _ = loss_and_gradient(
                theta, task.eval_inputs, task.eval_targets, hidden, config.activation
            )
            curves["eval_loss"][:, epoch] = eval_loss
            curves["eval_acc"][:, epoch] = eval_acc
        curves["grad_norm"][:, epoch] = torch.linalg.vector_norm(gradient, dim=1)
        curves["gini_abs_theta"][:, epoch] = gini(theta.abs())

        if next_snapshot < len(take) and epoch == take[next_snapshot]:
            snapshots[:, next_snapshot] = gradient
            next_snapshot += 1

        velocity.mul_(config.momentum).add_(gradient)
        theta.sub_(config.learning_rate * velocity)

    metrics = {name: curve.numpy() for name, curve in curves.items()}
    return TrainingResult(
        metrics=metrics,
        snapshots=snapshots.numpy(),
        snapshot_epochs=np.asarray(take, dtype=np.int64),
        grok_epoch=first_solved_epoch(metrics["train_acc"], task.solved_accuracy),
    )
