"""Seed-epochs per second of batched training against a per-seed loop of nn.Module networks.

    python bench/bench_training.py [--seeds 100] [--epochs 200] [--loop-epochs 50]

Both sides do the same work per epoch: forward, backward, a heavy-ball SGD step,
and the recorded metrics (accuracy, loss, gradient norm, Gini of |theta|), in
float32 (the default of both) on one intra-op thread, which is how data_gen trains.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from data_gen.config import TrainingConfig
from data_gen.tasks import get_task
from data_gen.training import gini, train_runs


def batched_rate(hidden: int, seeds: int, epochs: int) -> float:
    config = TrainingConfig(epochs=epochs, snapshot_every=2)
    task = get_task("xor")
    started = time.perf_counter()
    train_runs(task, hidden, np.arange(seeds), config, root_seed=0)
    return seeds * epochs / (time.perf_counter() - started)


def loop_rate(hidden: int, seeds: int, epochs: int) -> float:
    config = TrainingConfig()
    task = get_task("xor")
    x, y = task.train_inputs.float(), task.train_targets.float()
    # Like the batched trainer, keep every snapshot and every per-epoch metric.
    snapshots = np.empty((seeds, (epochs + 1) // 2, 4 * hidden + 1), dtype=np.float32)
    curves = np.empty((seeds, epochs, 4))
    started = time.perf_counter()
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)
        for epoch in range(epochs):
            optimizer.zero_grad()
            logits = model(x).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            loss.backward()
            with torch.no_grad():
                gradient = torch.cat([p.grad.flatten() for p in model.parameters()])
                theta = torch.cat([p.flatten() for p in model.parameters()])
                accuracy = ((logits > 0).float() == y).float().mean().item()
                norm = torch.linalg.vector_norm(gradient).item()
                curves[seed, epoch] = accuracy, loss.item(), norm, gini(theta.abs()[None]).item()
                if epoch % 2 == 0:
                    snapshots[seed, epoch // 2] = gradient.numpy()
            optimizer.step()
    return seeds * epochs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="runs trained per measurement (default: 100)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs of the batched run (default: 200)")
    parser.add_argument("--loop-epochs", type=int, default=50, help="epochs of the per-seed loop (default: 50)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"{'h':>5} {'batched seed-epochs/s':>22} {'loop seed-epochs/s':>19} {'ratio':>7}")
    for hidden in (20, 500):
        # Warm-up: the first run of either side in a process also pays for one-time set-up.
        batched_rate(hidden, args.seeds, 5)
        loop_rate(hidden, 2, 5)
        batched = batched_rate(hidden, args.seeds, args.epochs)
        loop = loop_rate(hidden, args.seeds, args.loop_epochs)
        print(f"{hidden:>5} {batched:>22,.0f} {loop:>19,.0f} {batched / loop:>7.1f}")


if __name__ == "__main__":
    main()
