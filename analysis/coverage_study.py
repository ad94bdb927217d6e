"""Coverage of a known exponent by the published bootstrap and by this project's posterior.

    python -m analysis.coverage_study --replicates 100 --out reports/coverage
    python -m analysis.coverage_study --quick

Every replicate simulates avalanche records with a known exponent D
(``analysis.coverage_simulation``) under each condition in ``CONDITIONS``, applies the
three estimators of ``analysis.coverage_estimators`` and records whether each interval
contains D. Outputs in the output folder: ``coverage.json`` (coverage, nominal level,
binomial tolerance and interval widths per condition and method), ``replicates.csv``
(every interval) and ``coverage.png``. docs/coverage.md describes the study and its
results.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from analysis.bootstrap import INTERVAL, RESAMPLES
from analysis.coverage_estimators import METHODS, Interval, ReplicateFitter
from analysis.coverage_simulation import SimulationSettings, simulate_input
from analysis.pipeline import FitOptions
from analysis.results import write_json
from data_gen.provenance import git_revision, package_versions
from data_gen.records import atomic_path
from models.diagnostics import HDI_PROB
from models.sampling import SamplerSettings

log = logging.getLogger("analysis.coverage_study")

CONDITIONS = {
    # Independent snapshots within a run.
    "independent": SimulationSettings(rho=0.0),
    # Lag-1 correlation of the default preset's log sizes (about 0.9 between snapshots two epochs apart).
    "ar1_0.9": SimulationSettings(rho=0.9),
    # The same with 4 runs per scale instead of 16: small strata for the bootstrap.
    "ar1_0.9_4_runs": SimulationSettings(rho=0.9, runs_per_scale=4),
}
REPLICATES = 100
QUICK_REPLICATES = 10
TOLERANCE_LEVEL = 0.95  # probability of the binomial acceptance range around each nominal level
TRUTH_DEFINITION = (
    "D is the slope of log size on log N: log sizes are intercept + D (log N - mean log N) + run effect "
    "+ stationary AR(1) noise, with run effects and noise independent of N, so the mean log size and "
    "the expected log maximum over a fixed window both change by D per unit of log N."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.coverage_study",
        description="Measure how often the published bootstrap interval and the posterior HDI contain a "
        "known exponent on simulated avalanche records.",
    )
    parser.add_argument(
        "--replicates",
        type=int,
        help=f"simulated data sets per condition (default: {REPLICATES}; {QUICK_REPLICATES} with --quick)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports/coverage"), help="output folder (default: reports/coverage)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the simulations, samplers and bootstraps (default: 0)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_REPLICATES} replicates per condition with the production sampler, for a test run of "
        "a few minutes",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default: INFO)",
    )
    return parser


def replicate_seed(seed: int, replicate: int) -> int:
    """Return the seed of one replicate's data, sampler and bootstrap, the same in every condition."""
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0])


def binomial_tolerance(replicates: int, nominal: float, level: float = TOLERANCE_LEVEL) -> list[float]:
    """Return the central range that contains the observed coverage with probability ``level`` at nominal coverage."""
    low, high = stats.binom.interval(level, replicates, nominal)
    return [float(low) / replicates, float(high) / replicates]


def summarise_method(intervals: list[Interval], truth: float, nominal: float) -> dict:
    """Coverage, its binomial tolerance and Wilson interval, and widths of one method's intervals."""
    k = len(intervals)
    low = np.array([i.low for i in intervals])
    high = np.array([i.high for i in intervals])
    covered = int(((low <= truth) & (truth <= high)).sum())
    width = high - low

    tolerance = binomial_tolerance(k, nominal)
    wilson = stats.binomtest(covered, k).proportion_ci(confidence_level=TOLERANCE_LEVEL, method="wilson")
    coverage = covered / k
    entry = {
        "replicates": k,
        "covered": covered,
        "coverage": coverage,
        "nominal": nominal,
        "tolerance": tolerance,
        "within_tolerance": tolerance[0] <= coverage <= tolerance[1],
        "coverage_wilson_interval": [float(wilson.low), float(wilson.high)],
        "width_mean": float(width.mean()),
        "width_median": float(np.median(width)),
        "estimate_mean": float(np.mean([i.estimate for i in intervals])),
        "estimate_sd": float(np.std([i.estimate for i in intervals], ddof=1)) if k > 1 else None,
    }

    checks = [i.passed_checks for i in intervals if i.passed_checks is not None]
    if checks:
        wide_low = np.array([i.low_at_bootstrap_level for i in intervals])
        wide_high = np.array([i.high_at_bootstrap_level for i in intervals])
        entry["fits_failing_checks"] = int(len(checks) - sum(checks))
        entry["at_bootstrap_level"] = {
            "nominal": INTERVAL,
            "coverage": float(((wide_low <= truth) & (truth <= wide_high)).mean()),
            "width_mean": float((wide_high - wide_low).mean()),
            "width_median": float(np.median(wide_high - wide_low)),
        }
    return entry


def run_condition(
    name: str, settings: SimulationSettings, fitter: ReplicateFitter, replicates: int, seed: int, progress: bool
) -> tuple[dict, list[dict]]:
    """Fit every replicate of one condition, and return its summary and one row per interval."""
    started = time.perf_counter()
    by_method: dict[str, list[Interval]] = {m.name: [] for m in METHODS}
    rows = []
    for replicate in tqdm(range(replicates), desc=name, disable=not progress, unit="replicate"):
        data_seed = replicate_seed(seed, replicate)
        for interval in fitter.fit(simulate_input(settings, data_seed), data_seed):
            by_method[interval.method].append(interval)
            if interval.passed_checks is False:
                log.warning(
                    "%s replicate %d (seed %d): %s failed its convergence checks; its interval is kept",
                    name,
                    replicate,
                    data_seed,
                    interval.method,
                )
            rows.append(
                {
                    "condition": name,
                    "replicate": replicate,
                    "seed": data_seed,
                    **dataclasses.asdict(interval),
                    "covered": interval.low <= settings.D <= interval.high,
                }
            )
    methods = {m.name: summarise_method(by_method[m.name], settings.D, m.nominal) for m in METHODS}
    summary = {
        "settings": dataclasses.asdict(settings),
        "n_params": settings.n_params.tolist(),
        "truth_D": settings.D,
        "methods": methods,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    for method, entry in methods.items():
        log.info(
            "%s %s: coverage %.3f (nominal %.2f, tolerance %.3f..%.3f), median width %.4f",
            name,
            method,
            entry["coverage"],
            entry["nominal"],
            *entry["tolerance"],
            entry["width_median"],
        )
    return summary, rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write one CSV row per interval atomically."""
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def versions() -> dict[str, str]:
    found = package_versions()
    for name in ("pymc", "arviz", "pytensor", "nutpie", "matplotlib", "seaborn"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_study(
    replicates: int, out: Path, seed: int, *, quick: bool = False, progress: bool = True, command: str = ""
) -> dict:
    """Run every condition, write coverage.json, replicates.csv and coverage.png, and return the summary."""
    if replicates < 1:
        raise ValueError(f"replicates = {replicates} is invalid. Give at least 1 data set per condition.")
    started = time.perf_counter()
    sampler = SamplerSettings()
    fitter = ReplicateFitter(sampler)
    conditions, rows = {}, []
    for name, settings in CONDITIONS.items():
        log.info("condition %s: start, %d replicates", name, replicates)
        conditions[name], condition_rows = run_condition(name, settings, fitter, replicates, seed, progress)
        rows.extend(condition_rows)
        log.info("condition %s: done in %.0f s", name, conditions[name]["wall_seconds"])

    summary = {
        "truth": {"D": {name: c.D for name, c in CONDITIONS.items()}, "definition": TRUTH_DEFINITION},
        "replicates": replicates,
        "seed": seed,
        "quick": quick,
        "methods": {m.name: {"nominal": m.nominal, "description": m.description} for m in METHODS},
        "tolerance_level": TOLERANCE_LEVEL,
        "hdi_prob": HDI_PROB,
        "bootstrap": {"resamples": RESAMPLES, "interval": INTERVAL},
        "window": FitOptions.window,
        "sampler": {
            **dataclasses.asdict(sampler),
            "seed": "per replicate: the seed column of replicates.csv",
            "backend": sampler.resolved_backend(),
        },
        "conditions": conditions,
        "package_versions": versions(),
        "git_revision": git_revision(),
        "command": command,
    }
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)

    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "replicates.csv", rows)
    from analysis.coverage_figure import plot_coverage

    plot_coverage(summary, rows, out / "coverage.png")
    write_json(out / "coverage.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    replicates = args.replicates
    if replicates is None:
        replicates = QUICK_REPLICATES if args.quick else REPLICATES
    if replicates < 1:
        log.error("--replicates %d is invalid. Give at least 1 data set per condition.", replicates)
        return 2
    if args.out.exists() and not args.out.is_dir():
        log.error("--out %s is a file, not a folder. Give a folder path.", args.out)
        return 2

    log.info("start: %d replicates per condition, seed %d -> %s", replicates, args.seed, args.out)
    command = shlex.join(
        [Path(sys.executable).name, "-m", "analysis.coverage_study", *(sys.argv[1:] if argv is None else argv)]
    )
    with logging_redirect_tqdm():
        summary = run_study(
            replicates, args.out, args.seed, quick=args.quick, progress=not args.no_progress, command=command
        )
    log.info("end: wrote %s in %.0f s", args.out / "coverage.json", summary["wall_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
