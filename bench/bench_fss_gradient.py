"""Gradient cost of the scaling model in three forms, at the size of configs/paper.toml.

    python bench/bench_fss_gradient.py [--seeds 1000] [--repeats 200]

Builds (run, phase) groups of the paper preset's shape: eight scales, ``--seeds`` runs
per scale, three phases, 9 to 141 snapshots per pre or post group and 150 per
synthetic group. It then times the gradient of
the same log density in three forms, compiled with PyTensor's numba backend, which
nutpie uses:

- ``models.fss.build_model``, the default: location and within-run scale computed per
  (phase, scale) cell and gathered once per group, with the chi-square terms of the
  within-run scatter entering through sums per cell;
- ``pointwise=True``: the same, with one observed ``within`` term per group, which the
  log-likelihood and predictive groups need;
- the indexed form, which this project used before: every parameter gathered per group
  by phase and scale, and one ``within`` term per group.

The gradients, taken at each model's initial point, are checked to agree before
timing. The gain of the default form grows with the number of groups: at 50 seeds
per scale the three forms cost about the same. A fit of the headline D costs about
150,000 gradients (4 chains x 2,500 iterations x about 15 leapfrog steps).
"""

from __future__ import annotations

import argparse

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from bench_changepoint import time_gradient  # bench/ is on sys.path when this file runs as a script

from models.fss import OMEGA_RATE, GroupData, build_model, model_data

HIDDEN = (20, 32, 50, 79, 126, 199, 316, 500)  # the eight scales of configs/paper.toml


def paper_shaped_groups(seeds: int, seed: int = 0) -> GroupData:
    """Simulate one group per (run, phase) with D = 0.9, 1.2 and 1.0 for pre, post and synthetic."""
    rng = np.random.default_rng(seed)
    log_n = np.log([4.0 * h + 1 for h in HIDDEN])
    x = log_n - log_n.mean()
    scale = np.repeat(np.repeat(np.arange(len(HIDDEN)), seeds), 3)
    phase = np.tile(np.arange(3), len(HIDDEN) * seeds)
    exponent = np.array([0.9, 1.2, 1.0])[phase]
    count = np.where(phase == 2, 150, rng.integers(9, 142, size=phase.size))
    mean = 3.0 + exponent * x[scale] + rng.normal(0.0, 0.1, phase.size) + rng.normal(0.0, 0.5 / np.sqrt(count))
    sum_sq = 0.25 * rng.chisquare(count - 1)
    return GroupData(mean=mean, count=count, sum_sq=sum_sq, scale=scale, phase=phase, log_n=log_n)


def indexed_model(groups: GroupData) -> pm.Model:
    """Build the headline D model with each parameter gathered per group, as before the cell form."""
    values = model_data(groups)
    x = values["scale_x"][groups.scale]
    phase, scale, count = groups.phase, groups.scale, groups.count.astype(float)
    within = values["within_group"]
    with pm.Model(coords={"phase": list(groups.phases), "residual": np.arange(len(groups.log_n) - 2)}) as model:
        intercept = pm.Normal("intercept", mu=float(groups.mean.mean()), sigma=2.0, dims="phase")
        exponent = pm.Normal("D_free", mu=1.0, sigma=0.5, dims="phase")
        omega = pm.Gamma("omega", alpha=2.0, beta=OMEGA_RATE, dims="phase")
        centred = values["centred"]
        z_residual = pm.Normal(
            "z_scale_residual", mu=0.0, sigma=pt.switch(centred, omega[:, None], 1.0), dims=("phase", "residual")
        )
        residual = pt.switch(centred, z_residual, omega[:, None] * z_residual)
        scale_effect = (values["residual_basis"] * residual[:, None, :]).sum(axis=2)
        sigma = pm.HalfNormal("sigma", sigma=1.0, dims="phase")
        kappa = pm.Normal("kappa", mu=0.0, sigma=0.5, dims="phase")
        nu = 1.0 + pm.Gamma("nu_minus_one", alpha=2.0, beta=0.1)
        tau_run = pm.HalfNormal("tau_run", sigma=0.5, dims="phase")
        sigma_g = sigma[phase] * pt.exp(kappa[phase] * x)
        mu = intercept[phase] + exponent[phase] * x + scale_effect[phase, scale]
        spread = pt.sqrt(tau_run[phase] ** 2 + sigma_g**2 / count)
        rate = 1.0 / (2.0 * sigma_g[within] ** 2)
        pm.Gamma("within", alpha=(count[within] - 1.0) / 2.0, beta=rate, observed=values["within_sum_sq"])
        pm.StudentT("group", nu=nu, mu=mu, sigma=spread, observed=groups.mean)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=1000, help="runs per scale (default: 1000, as in configs/paper.toml)"
    )
    parser.add_argument("--repeats", type=int, default=200, help="gradient evaluations timed per form (default: 200)")
    args = parser.parse_args()
    if args.seeds < 1 or args.repeats < 1:
        parser.error(f"--seeds and --repeats must be at least 1; got {args.seeds} and {args.repeats}")

    groups = paper_shaped_groups(args.seeds)
    print(f"{groups.mean.size} groups, {int(groups.count.sum())} snapshots")
    summed_ms, summed = time_gradient(build_model(groups), args.repeats)
    pointwise_ms, pointwise = time_gradient(build_model(groups, pointwise=True), args.repeats)
    indexed_ms, indexed = time_gradient(indexed_model(groups), args.repeats)
    np.testing.assert_allclose(summed, pointwise, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(summed, indexed, rtol=1e-8, atol=1e-8)
    print(f"cell sums (default): {summed_ms:.3f} ms per gradient")
    print(f"pointwise:           {pointwise_ms:.3f} ms per gradient")
    print(f"indexed (former):    {indexed_ms:.3f} ms per gradient")
    print(f"ratio pointwise / cell sums: {pointwise_ms / summed_ms:.1f}")
    print(f"ratio indexed / cell sums:   {indexed_ms / summed_ms:.1f}")


if __name__ == "__main__":
    main()
