"""Batched training: hand-written gradients, reproducibility and the recorded metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from data_gen.config import TrainingConfig
from data_gen.tasks import TASKS, Task, get_task, register_task
from data_gen.training import first_solved_epoch, gini, init_parameters, loss_and_gradient, train_runs


def autograd_loss(theta_row: torch.Tensor, task: Task, hidden: int, activation: str) -> torch.Tensor:
    d = task.n_inputs
    w1 = theta_row[: hidden * d].view(d, hidden).T
    b1 = theta_row[hidden * d : hidden * d + hidden]
    w2 = theta_row[hidden * d + hidden : hidden * d + 2 * hidden]
    b2 = theta_row[-1]
    module = torch.nn.functional
    a = (
        torch.tanh(task.train_inputs @ w1.T + b1)
        if activation == "tanh"
        else module.relu(task.train_inputs @ w1.T + b1)
    )
    logits = a @ w2 + b2
    return module.binary_cross_entropy_with_logits(logits, task.train_targets)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradient_matches_autograd(activation):
    task = get_task("xor")
    hidden = 7
    config = dataclasses.replace(TrainingConfig(), init_scale=1.5, dtype="float64")
    theta = init_parameters(task, hidden, np.arange(5), config, root_seed=3)
    theta[:, hidden * 2 : hidden * 3] = torch.randn(5, hidden, dtype=theta.dtype)  # non-zero biases

    loss, _, gradient = loss_and_gradient(theta, task.train_inputs, task.train_targets, hidden, activation)

    for row in range(5):
        leaf = theta[row].clone().requires_grad_(True)
        expected = autograd_loss(leaf, task, hidden, activation)
        expected.backward()
        torch.testing.assert_close(loss[row], expected.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gradient[row], leaf.grad, rtol=1e-10, atol=1e-12)


def test_run_independent_of_batch():
    task = get_task("xor")
    config = dataclasses.replace(TrainingConfig(), epochs=40, snapshot_every=10)
    together = train_runs(task, 16, np.array([0, 1, 2, 3]), config, root_seed=5)
    alone = train_runs(task, 16, np.array([2]), config, root_seed=5)

    for name, values in together.metrics.items():
        np.testing.assert_allclose(values[2], alone.metrics[name][0], rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(together.snapshots[2], alone.snapshots[0], rtol=1e-12)


def test_snapshot_shapes_and_epochs():
    task = get_task("xor")
    config = dataclasses.replace(TrainingConfig(), epochs=25, snapshot_every=10)
    result = train_runs(task, 10, np.arange(3), config, root_seed=0)

    assert result.snapshots.shape == (3, 3, task.n_params(10))
    assert result.snapshot_epochs.tolist() == [0, 10, 20]
    assert task.n_params(10) == 41
    for name, values in result.metrics.items():
        assert values.shape == (3, 25), name
    np.testing.assert_allclose(result.metrics["grad_norm"][:, 10], np.linalg.norm(result.snapshots[:, 1], axis=1))


def test_default_settings_grok_every_width():
    task = get_task("xor")
    config = TrainingConfig()
    for hidden in (20, 500):
        result = train_runs(task, hidden, np.arange(8), config, root_seed=0)
        assert (result.grok_epoch >= 0).all(), f"h={hidden}: grok epochs {result.grok_epoch}"
        assert (result.metrics["train_acc"][:, -1] == 1.0).all()


def test_gini_known_values():
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(gini(values).numpy(), [0.0, 0.75, 0.0])


def test_first_solved_epoch():
    acc = np.array(
        [
            [0.5, 1.0, 0.75, 1.0, 1.0],  # solved for good from epoch 3
            [0.5, 0.5, 0.75, 0.75, 0.75],  # never
            [1.0, 1.0, 1.0, 1.0, 1.0],  # from the start
            [0.5, np.nan, 1.0, 1.0, 1.0],  # a NaN epoch is not solved
        ]
    )
    assert first_solved_epoch(acc, 1.0).tolist() == [3, -1, 0, 2]


def test_task_registry_accepts_new_task():
    name = "and_gate_for_test"

    @register_task(name)
    def and_gate() -> Task:
        inputs = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
        targets = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        return Task(name, inputs, targets, inputs[3:], targets[3:])

    try:
        task = get_task(name)
        assert not task.eval_is_train
        config = dataclasses.replace(TrainingConfig(), epochs=5, snapshot_every=5)
        result = train_runs(task, 4, np.arange(2), config, root_seed=0)
        assert result.metrics["eval_acc"].shape == (2, 5)
        with pytest.raises(ValueError, match="already registered"):
            register_task(name)(and_gate)
    finally:
        TASKS.pop(name)


def test_unknown_task_rejected():
    with pytest.raises(KeyError, match="'parity' is not registered"):
        get_task("parity")
