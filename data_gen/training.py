"""Batched training of many n_inputs-h-1 MLPs with hand-written backpropagation.

All runs of one width train together. The parameters of run r are row r of a
flat ``theta`` tensor of shape (runs, N), laid out as [W1 (n_inputs x h, row
major, so entry (i, j) joins input i to hidden unit j), b1 (h), w2 (h), b2 (1)].
One epoch is one full-batch step of heavy-ball SGD on the mean binary
cross-entropy. Metrics and gradient snapshots are taken
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


class BatchedMLP:
    """Parameters of many n_inputs-h-1 networks in one block-major buffer, with work buffers.

    The buffer holds W1 of every run, then b1 of every run, then w2, then b2, so
    each block is one contiguous (runs, ...) view and an SGD step is three tensor
    operations. Forward and backward passes write into buffers allocated once:
    fresh multi-megabyte tensors in every epoch cost more in page faults than the
    arithmetic itself at these sizes (torch 2.13 on one CPU thread).
    """

    def __init__(self, theta: torch.Tensor, hidden: int, n_inputs: int, activation: str):
        self.runs, self.n_params = theta.shape
        self.hidden, self.n_inputs, self.activation = hidden, n_inputs, activation
        self.widths = (n_inputs * hidden, hidden, hidden, 1)
        self.storage = torch.empty(self.runs * self.n_params, dtype=theta.dtype)
        self.blocks = self._blocks(self.storage)  # (runs, width) views: W1, b1, w2, b2
        for block, part in zip(self.blocks, torch.split(theta, self.widths, dim=1), strict=True):
            block.copy_(part)
        self.w1 = self.blocks[0].view(self.runs, n_inputs, hidden)
        self.b1, self.w2, self.b2 = self.blocks[1:]
        self.velocity = torch.zeros_like(self.storage)
        self._buffers: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _blocks(self, storage: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            part.view(self.runs, width)
            for part, width in zip(torch.split(storage, [self.runs * w for w in self.widths]), self.widths, strict=True)
        )

    def flatten(self, out: torch.Tensor) -> torch.Tensor:
        """Write theta in the run-major layout [W1, b1, w2, b2] into ``out`` (runs, N)."""
        return torch.cat(self.blocks, dim=1, out=out)

    def _cast(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = id(inputs)
        if key not in self._inputs:
            self._inputs[key] = (inputs.to(self.storage.dtype), targets.to(self.storage.dtype))
        return self._inputs[key]

    def _work(self, purpose: str, n_patterns: int) -> dict[str, torch.Tensor]:
        key = (purpose, n_patterns)
        if key not in self._buffers:
            shape = (self.runs, n_patterns, self.hidden)
            dtype = self.storage.dtype
            gradient_storage = torch.empty_like(self.storage)
            self._buffers[key] = {
                "pre": torch.empty(shape, dtype=dtype),
                "a": torch.empty(shape, dtype=dtype),
                "a_w2": torch.empty(shape, dtype=dtype),
                "d_pre": torch.empty(shape, dtype=dtype),
                "gradient_storage": gradient_storage,  # block-major, like self.storage
                "gradient": torch.empty(self.runs, self.n_params, dtype=dtype),  # run-major
            }
        return self._buffers[key]

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, purpose: str = "eval"):
        """Return loss (runs,), accuracy (runs,), logits (runs, P) and the work buffers used."""
        x, y = self._cast(inputs, targets)
        work = self._work(purpose, len(x))
        pre, a = work["pre"], work["a"]

        # pre and a are (runs, patterns, h), with h contiguous; logits are (runs, patterns).
        torch.matmul(x, self.w1, out=pre).add_(self.b1[:, None, :])
        if self.activation == "tanh":
            # tanh(x) = 2 sigmoid(2x) - 1: on one CPU thread torch's sigmoid is about 5 times faster
            # than its tanh (torch 2.13, x86-64); the two differ by a few float eps.
            torch.sigmoid(torch.mul(pre, 2.0, out=a), out=a).mul_(2.0).sub_(1.0)
        else:
            torch.clamp_min(pre, 0.0, out=a)
        logits = torch.mul(a, self.w2[:, None, :], out=work["a_w2"]).sum(dim=2).add_(self.b2)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none").mean(
            dim=1
        )
        accuracy = ((logits > 0) == (y > 0.5)).mean(dim=1, dtype=y.dtype)
        return loss, accuracy, logits, work

    def loss_and_gradient(self, inputs: torch.Tensor, targets: torch.Tensor):
        """Return loss (runs,), accuracy (runs,) and the gradient (runs, N) of the mean loss.

        The gradient is a work buffer that the next call overwrites; copy it to keep it.
        """
        loss, accuracy, logits, work = self.forward(inputs, targets, purpose="train")
        x, y = self._cast(inputs, targets)
        a, d_pre = work["a"], work["d_pre"]
        grad_w1, grad_b1, grad_w2, grad_b2 = self._blocks(work["gradient_storage"])

        d_logits = (torch.sigmoid(logits) - y).div_(len(x))  # (runs, patterns)
        torch.sum(d_logits, dim=1, keepdim=True, out=grad_b2)
        torch.bmm(d_logits[:, None, :], a, out=grad_w2[:, None, :])
        if self.activation == "tanh":
            torch.mul(a, a, out=d_pre).neg_().add_(1.0)  # tanh' = 1 - a^2
        else:
            torch.gt(work["pre"], 0.0, out=d_pre)  # relu' as 0.0 or 1.0
        d_pre.mul_(self.w2[:, None, :]).mul_(d_logits[:, :, None])
        torch.bmm(x.T.expand(self.runs, -1, -1), d_pre, out=grad_w1.view(self.runs, self.n_inputs, self.hidden))
        torch.sum(d_pre, dim=1, out=grad_b1)
        gradient = torch.cat((grad_w1, grad_b1, grad_w2, grad_b2), dim=1, out=work["gradient"])
        return loss, accuracy, gradient

    def step(self, learning_rate: float, momentum: float) -> None:
        """Apply heavy-ball SGD with the last training gradient: v = momentum v + g, theta -= learning_rate v."""
        gradient = next(work for (purpose, _), work in self._buffers.items() if purpose == "train")
        self.velocity.mul_(momentum).add_(gradient["gradient_storage"])
        self.storage.add_(self.velocity, alpha=-learning_rate)


def loss_and_gradient(
    theta: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, hidden: int, activation: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean BCE loss (runs,), accuracy (runs,) and gradient (runs, N) for flat parameters theta."""
    model = BatchedMLP(theta, hidden, inputs.shape[1], activation)
    loss, accuracy, gradient = model.loss_and_gradient(inputs, targets)
    return loss, accuracy, gradient.clone()


def gini_in_place(values: np.ndarray) -> np.ndarray:
    """Gini coefficient of each row of a non-negative (runs, N) array, sorting the rows in place.

    An all-zero row has Gini 0. numpy's in-place sort is used because torch.sort is
    about 20 times slower on one CPU thread (torch 2.13).
    """
    n = values.shape[1]
    values.sort(axis=1)
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    total = values.sum(axis=1)
    # A row-wise numpy sum gives each run the same result whatever the batch size; BLAS gemv does not.
    weighted = (values * weights.astype(values.dtype)).sum(axis=1, dtype=np.float64)
    safe_total = np.where(total > 0, total, 1.0)
    return np.where(total > 0, weighted / (n * safe_total), 0.0)


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of each row of a non-negative (runs, N) tensor; 0 for an all-zero row."""
    return torch.from_numpy(gini_in_place(values.detach().cpu().numpy().astype(np.float64, copy=True)))


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
    model = BatchedMLP(theta, hidden, task.n_inputs, config.activation)
    epochs = config.epochs
    take = snapshot_epochs(config)
    n_runs, n_params = theta.shape

    curves = {name: np.empty((n_runs, epochs)) for name in METRICS}
    snapshots = np.empty((n_runs, len(take), n_params), dtype=config.dtype)
    flat = np.empty((n_runs, n_params), dtype=config.dtype)
    # The file stores the Gini coefficient in float32, so sorting float32 magnitudes loses nothing.
    magnitude = np.empty((n_runs, n_params), dtype=np.float32)
    next_snapshot = 0

    for epoch in range(epochs):
        # 1. Loss, accuracy and gradient at the parameters before this epoch's update.
        loss, accuracy, gradient = model.loss_and_gradient(task.train_inputs, task.train_targets)
        curves["train_loss"][:, epoch] = loss.numpy()
        curves["train_acc"][:, epoch] = accuracy.numpy()
        if not task.eval_is_train:
            loss, accuracy, _, _ = model.forward(task.eval_inputs, task.eval_targets)
        curves["eval_loss"][:, epoch] = loss.numpy()
        curves["eval_acc"][:, epoch] = accuracy.numpy()
        curves["grad_norm"][:, epoch] = torch.linalg.vector_norm(gradient, dim=1).numpy()

        # 2. Gini of |theta|, sorting a flat copy in place.
        model.flatten(torch.from_numpy(flat))
        np.abs(flat, out=magnitude)
        curves["gini_abs_theta"][:, epoch] = gini_in_place(magnitude)

        if next_snapshot < len(take) and epoch == take[next_snapshot]:
            snapshots[:, next_snapshot] = gradient.numpy()
            next_snapshot += 1

        # 3. Heavy-ball SGD step.
        model.step(config.learning_rate, config.momentum)

    return TrainingResult(
        metrics=curves,
        snapshots=snapshots,
        snapshot_epochs=np.asarray(take, dtype=np.int64),
        grok_epoch=first_solved_epoch(curves["train_acc"], task.solved_accuracy),
    )
