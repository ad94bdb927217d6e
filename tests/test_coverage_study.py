"""The coverage study: its simulator, its summaries, its command line and a quick run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from analysis.bootstrap import ols_slope
from analysis.coverage_estimators import METHODS, Interval
from analysis.coverage_simulation import SimulationSettings, ar1_noise, simulate_input
from analysis.coverage_study import CONDITIONS, binomial_tolerance, main, run_study, summarise_method
from analysis.phases import max_size_groups, split_phases, typical_size_groups
from analysis.pipeline import FitOptions
from models.fss import build_model


def window_max_slope(settings: SimulationSettings, seed: int = 0) -> float:
    """Least-squares slope of the D_max response (window maximum per run) on log N."""
    data = simulate_input(settings, seed)
    groups, _ = max_size_groups(data, split_phases(data, None), None, FitOptions.window)
    return float(ols_slope(groups.log_n[groups.scale], groups.mean))


# -- simulator ---------------------------------------------------------------------------


def test_window_max_slope_exact_without_noise():
    settings = SimulationSettings(D=0.9, run_sd=0.0, noise_sd=0.0, snapshots_per_run=20)

    assert window_max_slope(settings) == pytest.approx(0.9, abs=1e-12)


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_window_max_slope_recovered_on_huge_sample(rho):
    settings = SimulationSettings(D=1.2, rho=rho, runs_per_scale=4000, snapshots_per_run=FitOptions.window)

    slope = window_max_slope(settings, seed=1)

    # The slope's standard error here is about 0.001.
    assert slope == pytest.approx(1.2, abs=0.005), f"window-maximum slope {slope:.4f}, true D 1.2, rho {rho}"


def test_mean_log_size_slope_recovered():
    settings = SimulationSettings(D=0.9, rho=0.9, runs_per_scale=4000, snapshots_per_run=FitOptions.window)
    data = simulate_input(settings, 2)
    groups = typical_size_groups(data, split_phases(data, None))

    slope = float(ols_slope(groups.log_n[groups.scale], groups.mean))

    assert slope == pytest.approx(0.9, abs=0.005)


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.5, 0.9])
def test_ar1_noise_correlation_and_sd(rho):
    noise = ar1_noise(np.random.default_rng(3), 20_000, 40, rho, 0.05)

    lag_one = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    assert lag_one == pytest.approx(rho, abs=0.01)
    # Stationary: the same marginal sd at the first and at the last step.
    assert noise[:, 0].std() == pytest.approx(0.05, rel=0.02)
    assert noise[:, -1].std() == pytest.approx(0.05, rel=0.02)


def test_ar1_noise_lag_k_correlation():
    noise = ar1_noise(np.random.default_rng(4), 20_000, 40, 0.9, 1.0)

    lag_five = np.corrcoef(noise[:, :-5].ravel(), noise[:, 5:].ravel())[0, 1]
    assert lag_five == pytest.approx(0.9**5, abs=0.01)


def test_simulated_input_shape():
    settings = SimulationSettings(runs_per_scale=3, snapshots_per_run=12)
    data = simulate_input(settings, 5)

    assert data.kind == "external"
    assert data.n_params.tolist() == [81, 129, 201, 317, 505, 797, 1265, 2001]
    assert data.n_runs == 8 * 3
    assert len(data.snapshots.log_size) == 8 * 3 * 12
    assert (data.snapshots.phase == -1).all()
    np.testing.assert_allclose(np.log(data.snapshots.size), data.snapshots.log_size)
    assert split_phases(data, None).phases == ("all",)


def test_simulation_same_seed_same_data():
    settings = SimulationSettings(runs_per_scale=2, snapshots_per_run=5)

    first = simulate_input(settings, 7).snapshots.log_size
    again = simulate_input(settings, 7).snapshots.log_size
    other = simulate_input(settings, 8).snapshots.log_size

    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rho": 1.0}, "rho = 1.0 is invalid"),
        ({"rho": -1.5}, "rho = -1.5 is invalid"),
        ({"run_sd": -0.1}, "must be >= 0"),
        ({"runs_per_scale": 1}, "runs_per_scale = 1"),
        ({"snapshots_per_run": 1}, "snapshots_per_run = 1"),
        ({"hidden": (20, 20)}, "at least two network sizes"),
    ],
)
def test_simulation_settings_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        SimulationSettings(**changes)


# -- the intercept shift that lets the study refit a compiled model ----------------------


def test_model_translation_equivariant():
    settings = SimulationSettings(runs_per_scale=3, snapshots_per_run=12)
    data = simulate_input(settings, 9)
    groups = typical_size_groups(data, split_phases(data, None))
    shift = 0.37
    shifted = typical_size_groups(data, split_phases(data, None))
    shifted.mean = groups.mean + shift

    model, model_shifted = build_model(groups), build_model(shifted)
    point = model.initial_point()
    point_shifted = dict(point, intercept=point["intercept"] + shift)
    point["D_free"] = point_shifted["D_free"] = np.array([0.8])

    logp = model.compile_logp()(point)
    assert model_shifted.compile_logp()(point_shifted) == pytest.approx(logp, rel=1e-10)


# -- summaries ---------------------------------------------------------------------------


def make_interval(low, high, passed=None, estimate=0.0):
    return Interval("m", estimate, low, high, low - 0.1, high + 0.1, passed)


def test_summary_counts_coverage_and_widths():
    intervals = [make_interval(0.8, 1.0), make_interval(0.95, 1.05), make_interval(0.85, 0.89), make_interval(0.9, 0.9)]

    entry = summarise_method(intervals, truth=0.9, nominal=0.94)

    assert entry["covered"] == 2  # the degenerate interval [0.9, 0.9] counts as covering 0.9
    assert entry["coverage"] == pytest.approx(0.5)
    assert entry["width_mean"] == pytest.approx((0.2 + 0.1 + 0.04 + 0.0) / 4)
    assert entry["width_median"] == pytest.approx(0.07)
    assert entry["tolerance"] == binomial_tolerance(4, 0.94)
    assert "fits_failing_checks" not in entry


def test_summary_of_posterior_counts_failed_fits():
    intervals = [make_interval(0.8, 1.0, passed=True), make_interval(0.95, 1.05, passed=False)]

    entry = summarise_method(intervals, truth=0.9, nominal=0.94)

    assert entry["fits_failing_checks"] == 1
    assert entry["at_bootstrap_level"]["coverage"] == pytest.approx(1.0)
    assert entry["at_bootstrap_level"]["width_mean"] == pytest.approx(0.35)


def test_binomial_tolerance_holds_nominal():
    for replicates, nominal in [(10, 0.94), (150, 0.95), (150, 0.94)]:
        low, high = binomial_tolerance(replicates, nominal)
        mass = stats.binom.cdf(high * replicates, replicates, nominal) - stats.binom.cdf(
            low * replicates - 1, replicates, nominal
        )
        assert low <= nominal <= high
        assert mass >= 0.95, f"range [{low}, {high}] holds {mass:.3f} of Binomial({replicates}, {nominal})"


# -- command line guards -----------------------------------------------------------------


@pytest.mark.parametrize("replicates", ["0", "-3"])
def test_cli_rejects_nonpositive_replicates(replicates, tmp_path, caplog):
    out = tmp_path / "coverage"

    assert main(["--replicates", replicates, "--out", str(out), "--no-progress"]) == 2
    assert f"--replicates {replicates} is invalid" in caplog.text
    assert not out.exists()


def test_cli_rejects_file_as_out(tmp_path, caplog):
    existing = tmp_path / "coverage.json"
    existing.write_text("keep me", encoding="utf-8")

    assert main(["--replicates", "1", "--out", str(existing), "--no-progress"]) == 2
    assert "is a file, not a folder" in caplog.text
    assert existing.read_text(encoding="utf-8") == "keep me"


def test_run_study_rejects_zero_replicates(tmp_path):
    with pytest.raises(ValueError, match="replicates = 0 is invalid"):
        run_study(0, tmp_path, seed=0, progress=False)


def test_cli_help_names_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--replicates", "--out", "--seed", "--quick"):
        assert option in text


# -- a quick study with the production sampler -------------------------------------------


@pytest.mark.slow
def test_quick_study_posterior_coverage(tmp_path):
    out = tmp_path / "coverage"

    assert main(["--quick", "--out", str(out), "--no-progress", "--seed", "1"]) == 0

    summary = json.loads((out / "coverage.json").read_text(encoding="utf-8"))
    assert summary["replicates"] == 10
    assert summary["sampler"]["draws"] == 1500
    assert set(summary["conditions"]) == set(CONDITIONS)
    for name, condition in summary["conditions"].items():
        bootstrap = condition["methods"]["bootstrap_D_max"]
        assert 0.0 <= bootstrap["coverage"] <= 1.0, f"{name}: bootstrap coverage {bootstrap['coverage']}"
        assert bootstrap["nominal"] == 0.95
        for method in ("posterior_D_max", "posterior_D"):
            entry = condition["methods"][method]
            low, high = entry["tolerance"]
            assert entry["nominal"] == 0.94
            assert low <= entry["coverage"] <= high, (
                f"{name} {method}: coverage {entry['coverage']:.2f} outside the binomial tolerance "
                f"[{low:.2f}, {high:.2f}] of nominal 0.94; Wilson interval {entry['coverage_wilson_interval']}"
            )

    with (out / "replicates.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(CONDITIONS) * 10 * len(METHODS)
    assert (out / "coverage.png").stat().st_size > 10_000
