"""Tests of the SBC statistics in analysis.sbc on inputs whose result is known."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import sbc


def conjugate_replicates(n_replicates: int, posterior_sd_factor: float, seed: int = 0):
    """Ranks and PIT values of a normal mean with a N(0, 1) prior and one N(theta, 1) observation.

    The exact posterior is N(y / 2, 1 / 2). ``posterior_sd_factor`` scales its sd, so 1 gives
    a calibrated posterior and values below 1 an overconfident one.
    """
    rng = np.random.default_rng(seed)
    ranks, pits = [], []
    for _ in range(n_replicates):
        theta = rng.normal()
        y = rng.normal(theta, 1.0)
        draws = rng.normal(y / 2, np.sqrt(0.5) * posterior_sd_factor, size=(4, 1000))
        ranks.append(sbc.randomised_rank(sbc.thin(draws), theta, rng))
        pits.append(sbc.posterior_cdf(draws, theta, rng))
    return np.array(ranks), np.array(pits)


def test_thin_spreads_draws_over_chains():
    draws = np.arange(4 * 1500).reshape(4, 1500)
    thinned = sbc.thin(draws)
    assert thinned.size == 100
    assert np.array_equal(thinned[:25], np.arange(59, 1500, 60))
    assert np.array_equal(thinned[25:50], 1500 + np.arange(59, 1500, 60))


def test_thin_keeps_short_chains_whole():
    draws = np.arange(2 * 30).reshape(2, 30)
    assert np.array_equal(np.sort(sbc.thin(draws)), np.arange(60))


def test_thin_rejects_flat_input():
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        sbc.thin(np.zeros(10))


def test_randomised_rank_counts_draws_below():
    rng = np.random.default_rng(0)
    assert sbc.randomised_rank(np.array([1.0, 2.0, 3.0]), 2.5, rng) == 2
    assert sbc.randomised_rank(np.array([1.0, 2.0, 3.0]), 0.0, rng) == 0
    assert sbc.randomised_rank(np.array([1.0, 2.0, 3.0]), 9.0, rng) == 3


def test_randomised_rank_splits_ties_uniformly():
    rng = np.random.default_rng(1)
    draws = np.array([0, 5, 5, 5, 9])  # a discrete posterior with three draws at the truth
    ranks = np.array([sbc.randomised_rank(draws, 5, rng) for _ in range(4000)])
    assert set(np.unique(ranks)) == {1, 2, 3, 4}
    assert np.allclose(np.bincount(ranks, minlength=5)[1:] / ranks.size, 0.25, atol=0.03)


def test_posterior_cdf_of_discrete_draws():
    rng = np.random.default_rng(2)
    draws = np.array([0, 1, 1, 2])
    values = np.array([sbc.posterior_cdf(draws, 1, rng) for _ in range(2000)])
    assert values.min() >= 0.25
    assert values.max() <= 0.75
    assert sbc.posterior_cdf(draws, 3, rng) == 1.0


def test_covers_central_intervals():
    assert sbc.covers(0.5, 0.5)
    assert sbc.covers(0.25, 0.5)
    assert not sbc.covers(0.2, 0.5)
    assert sbc.covers(0.031, 0.94)
    assert not sbc.covers(0.029, 0.94)
    assert not sbc.covers(0.98, 0.94)


def test_binomial_tolerance_of_known_counts():
    assert sbc.binomial_tolerance(100, 0.94) == (0.87, 0.99)
    assert sbc.binomial_tolerance(20, 0.94) == (0.75, 1.0)
    assert sbc.binomial_tolerance(100, 0.5) == (0.37, 0.63)


def test_binomial_tolerance_rejects_zero_replicates():
    with pytest.raises(ValueError, match="n = 0 replicates"):
        sbc.binomial_tolerance(0, 0.94)


def test_uniformity_test_passes_uniform_fractions():
    fractions = (np.arange(100) + 0.5) / 100
    p_value, bins = sbc.uniformity_test(fractions)
    assert bins == 10
    assert p_value > 0.99


def test_uniformity_test_fails_biased_fractions():
    rng = np.random.default_rng(3)
    fractions = rng.beta(2.0, 5.0, size=100)  # truths mostly low in their posteriors
    p_value, _ = sbc.uniformity_test(fractions)
    assert p_value < 1e-6


def test_uniformity_test_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 replicates"):
        sbc.uniformity_test(np.array([0.5]))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        sbc.uniformity_test(np.array([0.5, 1.5]))


def test_n_bins_keeps_five_per_bin():
    assert sbc.n_bins(20) == 4
    assert sbc.n_bins(100) == 10
    assert sbc.n_bins(3) == 2
    assert sbc.n_bins(1000) == 10


def test_summarise_calibrated_posterior():
    ranks, pits = conjugate_replicates(200, posterior_sd_factor=1.0)
    entry = sbc.summarise(ranks, 100, pits, np.random.default_rng(4))
    print({k: entry[k] for k in ("coverage_50", "coverage_94", "rank_uniformity_p")})
    assert entry["replicates"] == 200
    assert entry["within_tolerance_50"]
    assert entry["within_tolerance_94"]
    assert entry["within_tolerance"]
    assert entry["rank_uniformity_p"] > 0.01
    assert len(entry["rank_fractions"]) == 200


def test_summarise_overconfident_posterior():
    ranks, pits = conjugate_replicates(200, posterior_sd_factor=0.4)
    entry = sbc.summarise(ranks, 100, pits, np.random.default_rng(5))
    print({k: entry[k] for k in ("coverage_50", "coverage_94", "rank_uniformity_p")})
    assert not entry["within_tolerance_94"]
    assert not entry["within_tolerance"]
    assert entry["coverage_94"] < 0.8
    assert entry["rank_uniformity_p"] < 1e-6


def test_summarise_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 ranks but 2 PIT values"):
        sbc.summarise(np.array([1, 2, 3]), 100, np.array([0.1, 0.2]), np.random.default_rng(0))
