"""Gradient cost of the changepoint potential: per-scale matrix products against a plain logsumexp.

    python bench/bench_changepoint.py [--seeds 1000] [--repeats 50]

Builds the (runs, T + 1) table of simulated accuracy series with 300 epochs at the eight
default scales. It then times the gradient of the summed log-likelihood over the
hyperparameters in two forms, both compiled with PyTensor's numba backend, which nutpie uses:

- ``models.changepoint.build_model``: one matrix-vector product per scale against a table
  exponentiated once;
- the direct form, logsumexp over j of table + log prior, which exponentiates the whole
  table at every gradient.

Both gradients are checked to agree before timing. The default of 1000 seeds per scale is the
size of configs/paper.toml.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from analysis.simulate import simulate_records
from models.changepoint import ChangepointConfig, _log_tau_prior, build_model, log_marginal_table


def direct_model(table: np.ndarray, log_n: np.ndarray, scale_index: np.ndarray) -> pm.Model:
    """Build the model of build_model with its potential written as a logsumexp over the full table."""
    n_epochs = table.shape[1] - 1
    with pm.Model() as model:
        x = log_n - log_n.mean()
        mu = pm.Normal("mu", mu=np.log(n_epochs / 4), sigma=1.5)
        beta = pm.Normal("beta", mu=0.0, sigma=1.0)
        sigma = pm.HalfNormal("sigma", sigma=1.0)
        weights = pm.Dirichlet("mixture_weights", a=np.ones(3))
        log_prior = _log_tau_prior(mu, beta, sigma, weights, x, n_epochs)
        table_data = pm.Data("log_marginal", table)
        pm.Potential("run_log_likelihood", pm.math.logsumexp(table_data + log_prior[scale_index], axis=1).sum())
    return model


def time_gradient(model: pm.Model, repeats: int) -> tuple[float, np.ndarray]:
    """Time the gradient at the initial point; return milliseconds per evaluation and the gradient."""
    gradient = model.compile_dlogp(mode="NUMBA")
    point = model.initial_point()
    value = gradient(point)
    started = time.perf_counter()
    for _ in range(repeats):
        gradient(point)
    return (time.perf_counter() - started) / repeats * 1e3, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="runs per scale (default: 1000, as in configs/paper.toml)")
    parser.add_argument("--repeats", type=int, default=50, help="timed gradient evaluations (default: 50)")
    args = parser.parse_args()
    pytensor.config.compute_test_value = "off"

    data, _, _ = simulate_records(seed=0, n_seeds=args.seeds, epochs=300)
    series = np.rint(data.train_acc * 4).astype(int)
    table = log_marginal_table(series, ChangepointConfig(n_trials=4))
    print(f"table: {table.shape[0]} runs x {table.shape[1]} tau values")

    fast_ms, fast_gradient = time_gradient(build_model(table, data.log_n, data.run_scale), args.repeats)
    direct_ms, direct_gradient = time_gradient(direct_model(table, data.log_n, data.run_scale), args.repeats)
    np.testing.assert_allclose(fast_gradient, direct_gradient, rtol=1e-8, atol=1e-8 * np.abs(direct_gradient).max())
    print(f"per-scale products: {fast_ms:8.2f} ms per gradient")
    print(f"direct logsumexp:   {direct_ms:8.2f} ms per gradient")
    print(f"ratio: {direct_ms / fast_ms:.1f}")


if __name__ == "__main__":
    main()
