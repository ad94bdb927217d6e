"""Rank statistics, interval coverage and their tolerances for simulation-based calibration.

In simulation-based calibration (SBC; Talts et al. 2018, arXiv:1804.06788), parameters
are drawn from the prior, data are simulated from them and the model is fitted. If the
fit is correct, the rank of each true value among L roughly independent posterior draws
is uniform on 0..L, and a central interval of probability p covers the true value in a
share p of the replicates. This module contains the statistics only and imports no PyMC.

Ties (the grokking epoch tau is discrete) are split at random, so ranks and PIT values
stay uniform for discrete parameters too.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

THINNED_DRAWS = 100  # posterior draws kept for the rank, spread evenly over chains
INTERVAL_PROBS = (0.5, 0.94)  # central posterior intervals whose coverage is counted
TOLERANCE_LEVEL = 0.99  # probability of the binomial interval around each nominal coverage
MAX_BINS = 10  # rank histogram bins of the chi-square test
MIN_EXPECTED_PER_BIN = 5  # fewer replicates per bin make the chi-square approximation poor


def thin(draws: np.ndarray, n_keep: int = THINNED_DRAWS) -> np.ndarray:
    """Keep about ``n_keep`` draws of a (chain, draw) array, evenly spaced within each chain.

    Returns a 1-D array of ``chains * ceil(n_keep / chains)`` draws, or every draw when a
    chain is shorter than its share.
    """
    draws = np.asarray(draws)
    if draws.ndim != 2 or draws.size == 0:
        raise ValueError(f"draws has shape {draws.shape}. Pass a non-empty (chain, draw) array.")
    n_chains, n_draws = draws.shape
    per_chain = min(n_draws, -(-n_keep // n_chains))
    # Evenly spaced positions that end on the last draw, so the stride is n_draws / per_chain.
    positions = np.floor((np.arange(per_chain) + 1) * n_draws / per_chain).astype(int) - 1
    return draws[:, positions].ravel()


def randomised_rank(draws: np.ndarray, truth: float, rng: np.random.Generator) -> int:
    """Count the draws below ``truth``, with draws equal to it counted below at random.

    Under a calibrated posterior and independent draws, the result is uniform on 0..len(draws).
    """
    draws = np.asarray(draws).ravel()
    below = int((draws < truth).sum())
    ties = int((draws == truth).sum())
    return below + int(rng.integers(0, ties + 1))


def posterior_cdf(draws: np.ndarray, truth: float, rng: np.random.Generator) -> float:
    """Return the randomised probability integral transform P(theta < truth) + V P(theta = truth), V ~ U(0, 1)."""
    draws = np.asarray(draws).ravel()
    below = (draws < truth).mean()
    ties = (draws == truth).mean()
    return float(below + rng.random() * ties)


def covers(pit: float, prob: float) -> bool:
    """Return whether the central interval of probability ``prob`` covers the truth whose PIT is ``pit``.

    For a continuous posterior this is the equal-tailed quantile interval
    [q_{(1 - prob) / 2}, q_{(1 + prob) / 2}].
    """
    tail = (1.0 - prob) / 2.0
    return bool(tail <= pit <= 1.0 - tail)


def binomial_tolerance(n: int, prob: float, level: float = TOLERANCE_LEVEL) -> tuple[float, float]:
    """Return the central ``level`` interval of Binomial(n, prob) / n, the coverage range expected by chance."""
    if n < 1:
        raise ValueError(f"n = {n} replicates is invalid. A coverage needs at least one replicate.")
    low, high = stats.binom.interval(level, n, prob)
    return float(low / n), float(high / n)


def n_bins(n_replicates: int) -> int:
    """Return the number of rank histogram bins: at most 10, with at least 5 replicates expected in each."""
    return int(np.clip(n_replicates // MIN_EXPECTED_PER_BIN, 2, MAX_BINS))


def uniformity_test(rank_fractions: np.ndarray, bins: int | None = None) -> tuple[float, int]:
    """Test rank fractions in [0, 1) for uniformity with Pearson's chi-square over equal bins.

    Returns the p-value and the number of bins (``n_bins`` of the sample size by default).
    A small p-value means the ranks are not uniform, so the posterior is miscalibrated.
    """
    values = np.asarray(rank_fractions, dtype=float)
    if values.size < 2:
        raise ValueError(f"{values.size} rank(s) given. The uniformity test needs at least 2 replicates.")
    if ((values < 0) | (values > 1)).any():
        raise ValueError("rank_fractions must lie in [0, 1]. Pass (rank + U(0, 1)) / (L + 1).")
    bins = bins or n_bins(values.size)
    counts = np.bincount(np.minimum((values * bins).astype(int), bins - 1), minlength=bins)
    return float(stats.chisquare(counts).pvalue), bins


def summarise(ranks: np.ndarray, n_thinned: int, pits: np.ndarray, rng: np.random.Generator) -> dict:
    """Summarise one parameter over replicates: coverages, their tolerances and the rank test.

    ``ranks`` are ``randomised_rank`` values among ``n_thinned`` draws and ``pits`` the
    ``posterior_cdf`` values over all draws, one per replicate. The rank fractions
    (rank + U(0, 1)) / (n_thinned + 1) are uniform on [0, 1) under calibration. They feed
    the chi-square test and the ECDF plot.
    """
    ranks = np.asarray(ranks, dtype=int)
    pits = np.asarray(pits, dtype=float)
    n = ranks.size
    if pits.size != n:
        raise ValueError(f"{n} ranks but {pits.size} PIT values. Pass one of each per replicate.")
    fractions = (ranks + rng.random(n)) / (n_thinned + 1)
    p_value, bins = uniformity_test(fractions)
    entry: dict[str, object] = {"replicates": int(n)}
    within = True
    for prob in INTERVAL_PROBS:
        key = f"{round(prob * 100)}"
        coverage = float(np.mean([covers(pit, prob) for pit in pits]))
        low, high = binomial_tolerance(n, prob)
        inside = low <= coverage <= high
        within &= inside
        entry[f"coverage_{key}"] = coverage
        entry[f"tolerance_{key}"] = [low, high]
        entry[f"within_tolerance_{key}"] = inside
    entry["within_tolerance"] = within
    entry["rank_uniformity_p"] = p_value
    entry["rank_bins"] = bins
    entry["ranks"] = ranks.tolist()
    entry["rank_fractions"] = np.round(fractions, 5).tolist()
    return entry
