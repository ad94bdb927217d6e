"""Task registry: the data a network is trained and evaluated on.

A task is a binary classification problem given as tensors. The trainer, the
probe and the writer only see ``Task`` objects, so a new task (sparse parity
with a held-out set, say) is one decorated factory function here::

    @register_task("my_task")
    def my_task() -> Task:
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Task:
    """Training and evaluation sets of a binary classification task."""

    name: str
    train_inputs: torch.Tensor  # (n_train, n_inputs), float
    train_targets: torch.Tensor  # (n_train,), 0.0 or 1.0
    eval_inputs: torch.Tensor  # (n_eval, n_inputs)
    eval_targets: torch.Tensor  # (n_eval,)
    solved_accuracy: float = 1.0  # training accuracy that counts as solved

    @property
    def n_inputs(self) -> int:
        return self.train_inputs.shape[1]

    @property
    def eval_is_train(self) -> bool:
        """True when evaluation reuses the training set, so eval metrics equal train metrics."""
        return self.eval_inputs is self.train_inputs and self.eval_targets is self.train_targets

    def n_params(self, hidden: int) -> int:
        """Parameter count N of the n_inputs-h-1 network with biases."""
        return self.n_inputs * hidden + hidden + hidden + 1


TASKS: dict[str, Callable[[], Task]] = {}


def register_task(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    def decorator(factory: Callable[[], Task]) -> Callable[[], Task]:
        if name in TASKS:
            raise ValueError(f"Task {name!r} is already registered; pick another name.")
        TASKS[name] = factory
        return factory

    return decorator


def get_task(name: str) -> Task:
    try:
        factory = TASKS[name]
    except KeyError:
        raise KeyError(f"Task {name!r} is not registered; known tasks: {sorted(TASKS)}.") from None
    return factory()


@register_task("xor")
def xor() -> Task:
    """Build XOR: the four patterns of {0, 1}^2 labelled x1 xor x2, evaluated on the same four."""
    inputs = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    return Task("xor", inputs, targets, inputs, targets)
