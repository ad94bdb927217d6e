"""Simulated avalanche records with a known exponent, for the coverage study.

Each run r at scale s has a series of snapshots t = 0..T-1 whose log sizes are

    y_{r,t} = a + D (log N_s - mean log N) + u_r + e_{r,t},
    u_r ~ N(0, run_sd^2),
    e_{r,0} ~ N(0, noise_sd^2),  e_{r,t} = rho e_{r,t-1} + sqrt(1 - rho^2) noise_sd z_{r,t},

so e is a stationary AR(1) series with marginal sd ``noise_sd`` and lag-1 correlation
``rho`` at every N. Because neither the run effects nor the noise depend on N, the
largest log size in a window of fixed length is a + D x_s + u_r + max_t e_{r,t}, whose
law shifts by exactly D log N between scales. The true exponent D is therefore the
slope of the mean log size and of the expected log window maximum alike, so the
published estimator (D_max) and the headline estimator (D) target the same number.

The records come out as an external-kind AnalysisInput with one unlabelled phase, the
shape ``analysis.phases`` reduces to groups. This module imports no PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.inputs import AnalysisInput, Snapshots

HIDDEN = np.array([20, 32, 50, 79, 126, 199, 316, 500])  # hidden widths of the default preset


@dataclass(frozen=True)
class SimulationSettings:
    D: float = 0.9  # true exponent of typical and window-maximum log size against log N
    intercept: float = 4.5  # mean log size at the mean log N
    runs_per_scale: int = 16  # runs (seeds) per network size, as in the default preset
    snapshots_per_run: int = 150  # the default preset's 300 epochs with a snapshot every 2
    run_sd: float = 0.1  # sd of the run effect u_r (log size)
    noise_sd: float = 0.05  # marginal sd of the AR(1) noise within a run (log size)
    rho: float = 0.9  # lag-1 correlation of the noise between consecutive snapshots
    hidden: tuple[int, ...] = tuple(HIDDEN.tolist())  # network sizes as hidden widths h, N = 4h + 1

    def __post_init__(self):
        if not -1.0 < self.rho < 1.0:
            raise ValueError(f"rho = {self.rho} is invalid because a stationary AR(1) series needs -1 < rho < 1.")
        if self.run_sd < 0 or self.noise_sd < 0:
            raise ValueError(
                f"run_sd = {self.run_sd} and noise_sd = {self.noise_sd} are invalid. Standard deviations must be >= 0."
            )
        if self.runs_per_scale < 2:
            raise ValueError(
                f"runs_per_scale = {self.runs_per_scale} is invalid because the bootstrap needs at least 2 runs per scale."
            )
        if self.snapshots_per_run < 2:
            raise ValueError(
                f"snapshots_per_run = {self.snapshots_per_run} is invalid. Give at least 2 snapshots per run."
            )
        if len(set(self.hidden)) < 2:
            raise ValueError(f"hidden = {self.hidden} is invalid because an exponent needs at least two network sizes.")

    @property
    def n_params(self) -> np.ndarray:
        return 4 * np.sort(np.asarray(self.hidden, dtype=np.int64)) + 1


def ar1_noise(rng: np.random.Generator, n_series: int, length: int, rho: float, sd: float) -> np.ndarray:
    """Draw ``n_series`` stationary AR(1) series of ``length`` steps, shape (n_series, length).

    Every value has marginal sd ``sd`` and consecutive values have correlation ``rho``.
    """
    innovations = rng.normal(0.0, sd, size=(n_series, length))
    noise = np.empty_like(innovations)
    noise[:, 0] = innovations[:, 0]
    innovation_scale = np.sqrt(1.0 - rho * rho)
    for t in range(1, length):
        noise[:, t] = rho * noise[:, t - 1] + innovation_scale * innovations[:, t]
    return noise


def simulate_input(settings: SimulationSettings, seed: int) -> AnalysisInput:
    """Return one replicate data set as an AnalysisInput of kind ``external`` with no phase labels."""
    rng = np.random.default_rng(seed)
    n_params = settings.n_params
    log_n = np.log(n_params.astype(float))
    x = log_n - log_n.mean()
    run_scale = np.repeat(np.arange(len(n_params)), settings.runs_per_scale)  # (n_runs,)
    n_runs, length = len(run_scale), settings.snapshots_per_run

    run_effect = rng.normal(0.0, settings.run_sd, size=n_runs)  # (n_runs,)
    noise = ar1_noise(rng, n_runs, length, settings.rho, settings.noise_sd)  # (n_runs, length)
    log_size = settings.intercept + settings.D * x[run_scale][:, None] + run_effect[:, None] + noise

    run = np.repeat(np.arange(n_runs), length)
    n_snapshots = n_runs * length
    snapshots = Snapshots(
        log_size=log_size.ravel(),
        size=np.exp(log_size.ravel()),
        scale=run_scale[run],
        run=run,
        epoch=np.tile(np.arange(length), n_runs),
        source=np.zeros(n_snapshots, dtype=np.int64),
        topology=np.full(n_snapshots, -1, dtype=np.int64),
        phase=np.full(n_snapshots, -1, dtype=np.int64),
    )
    return AnalysisInput(
        path=Path(f"<coverage replicate, seed {seed}>"),
        sha256="",
        kind="external",
        n_params=n_params,
        run_scale=run_scale,
        snapshots=snapshots,
    )
