"""Simulation-based calibration of the changepoint and phase-scaling models.

    python -m analysis.calibrate --out reports/calibration
    python -m analysis.calibrate --quick --models fss --replicates 10

For each replicate, the parameters are drawn from the model's priors, data of the
default preset's shape are simulated from them, and the model is fitted with the
production sampler. Each calibrated parameter's true value is ranked among 100 thinned
posterior draws, and the coverage of its central 50% and 94% intervals is counted.
Outputs in the output folder: ``calibration.json`` (fields in docs/calibration.md) and
``sbc_<model>.png`` (ECDF-difference plots of the ranks), both written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from analysis import sbc
from analysis.results import write_json
from analysis.sbc_models import CASES
from analysis.sbc_plots import write_model_figure
from models.diagnostics import EBFMI_MIN, ESS_MIN, RHAT_MAX
from models.sampling import SamplerSettings

log = logging.getLogger("analysis.calibrate")

FULL_REPLICATES = 100
QUICK_REPLICATES = 20
# Shorter chains for --quick, so that both models fit in a few minutes on 2 cores.
QUICK_SAMPLER = {"draws": 500, "tune": 500}
# Runs per scale of the simulated data; the default preset has 16. The changepoint model
# uses 4 to keep 100 production fits affordable. Fewer would save little, because its
# gradient cost is dominated by the prior over tau, which does not grow with the runs.
RUNS_PER_SCALE = {"changepoint": 4, "fss": 16}
MODEL_IDS = {"changepoint": 1, "fss": 2}  # seed streams, fixed whatever --models selects


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.calibrate",
        description="Simulation-based calibration (SBC) of the changepoint and phase-scaling models.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/calibration"),
        metavar="DIR",
        help="output folder for calibration.json and the figures (default: reports/calibration)",
    )
    parser.add_argument(
        "--replicates",
        type=int,
        metavar="K",
        help=f"simulated data sets per model, at least 2 (default: {FULL_REPLICATES}; {QUICK_REPLICATES} with --quick)",
    )
    parser.add_argument(
        "--models",
        default=",".join(CASES),
        help=f"comma-separated models to calibrate, from {', '.join(CASES)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior draws and the sampler (default: 0)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_REPLICATES} replicates and chains of {QUICK_SAMPLER['draws']} draws after "
        f"{QUICK_SAMPLER['tune']} tuning steps instead of the production sampler, for a check in minutes",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default: INFO)",
    )
    return parser


def parse_models(text: str) -> list[str]:
    """Split ``--models`` and check each name; raise ValueError naming an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--models {text!r} names no model. Choose from {', '.join(CASES)}.")
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise ValueError(f"--models: unknown model {unknown[0]!r}. Choose from {', '.join(CASES)}.")
    return list(dict.fromkeys(names))


def _seed(*parts: int) -> int:
    """Derive an integer seed from ``parts``, so each model and replicate has its own stream."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def calibrate_model(name: str, settings: SamplerSettings, replicates: int, seed: int) -> dict:
    """Run SBC for one model and return its calibration.json entry."""
    started = time.perf_counter()
    model_id = MODEL_IDS[name]
    case = CASES[name](settings, runs_per_scale=RUNS_PER_SCALE[name])
    simulated = case.simulate(replicates, _seed(seed, model_id))
    parameters = case.parameters()
    rank_rng = np.random.default_rng([seed, model_id, 0])

    ranks: dict[str, list[int]] = {p: [] for p in parameters}
    pits: dict[str, list[float]] = {p: [] for p in parameters}
    failed_checks, fit_errors = [], []
    n_thinned = None
    for replicate in simulated:
        fit_started = time.perf_counter()
        try:
            fit = case.fit(replicate, _seed(seed, model_id, replicate.index + 1))
        except Exception as error:
            log.exception("%s replicate %d: the fit failed; it is recorded and skipped", name, replicate.index)
            fit_errors.append({"replicate": replicate.index, "error": f"{type(error).__name__}: {error}"})
            continue
        for parameter in parameters:
            thinned = sbc.thin(fit.draws[parameter])
            n_thinned = thinned.size
            ranks[parameter].append(sbc.randomised_rank(thinned, replicate.truth[parameter], rank_rng))
            pits[parameter].append(sbc.posterior_cdf(fit.draws[parameter], replicate.truth[parameter], rank_rng))
        check = fit.diagnostics
        if not check["passed"]:
            failed_checks.append({"replicate": replicate.index, "failed": check["failed"]})
        log.info(
            "%s replicate %d/%d: %.1f s, convergence checks %s",
            name,
            replicate.index + 1,
            replicates,
            time.perf_counter() - fit_started,
            "passed" if check["passed"] else "FAILED: " + "; ".join(check["failed"]),
        )

    fitted = replicates - len(fit_errors)
    entry: dict[str, object] = {
        "data_shape": case.data_shape(),
        "sampler": {**dataclasses.asdict(settings), "backend": settings.resolved_backend()},
        "replicates_requested": replicates,
        "replicates_fitted": fitted,
        "fit_errors": fit_errors,
        "failed_convergence": len(failed_checks),
        "failed_convergence_replicates": failed_checks,
        "thinned_draws": n_thinned,
    }
    if fitted < 2:
        log.error("%s: only %d of %d replicates were fitted; no calibration is computed", name, fitted, replicates)
        entry["parameters"] = {}
    else:
        entry["parameters"] = {
            parameter: sbc.summarise(np.array(ranks[parameter]), n_thinned, np.array(pits[parameter]), rank_rng)
            for parameter in parameters
        }
    entry["wall_seconds"] = round(time.perf_counter() - started, 1)
    return entry


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _log_verdict(name: str, entry: dict) -> None:
    for parameter, result in entry["parameters"].items():
        low, high = result["tolerance_94"]
        log.log(
            logging.INFO if result["within_tolerance"] else logging.WARNING,
            "%s %s: coverage 50%% %.2f, 94%% %.2f (tolerance %.2f to %.2f), rank uniformity p = %.3f%s",
            name,
            parameter,
            result["coverage_50"],
            result["coverage_94"],
            low,
            high,
            result["rank_uniformity_p"],
            "" if result["within_tolerance"] else " OUTSIDE TOLERANCE",
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    replicates = args.replicates
    if replicates is None:
        replicates = QUICK_REPLICATES if args.quick else FULL_REPLICATES
    if replicates < 2:
        log.error("--replicates %d is invalid; give at least 2, because ranks are tested for uniformity.", replicates)
        return 2
    if args.seed < 0:
        log.error("--seed %d is invalid; give an integer >= 0.", args.seed)
        return 2
    try:
        models = parse_models(args.models)
    except ValueError as error:
        log.error("%s", error)
        return 2
    if args.out.exists() and not args.out.is_dir():
        log.error("--out %s is a file; give a folder for calibration.json and the figures.", args.out)
        return 2

    settings = SamplerSettings(seed=args.seed)
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK_SAMPLER)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log.info(
        "start: SBC of %s, %d replicates each, %d chains x %d draws (tune %d), seed %d -> %s",
        ", ".join(models),
        replicates,
        settings.chains,
        settings.draws,
        settings.tune,
        args.seed,
        args.out,
    )

    content: dict[str, object] = {
        "complete": False,
        "command": shlex.join([Path(sys.executable).name, "-m", "analysis.calibrate", *(argv or sys.argv[1:])]),
        "quick": bool(args.quick),
        "seed": args.seed,
        "method": {
            "rank": f"rank of the true value among {sbc.THINNED_DRAWS} posterior draws evenly spaced within "
            "each chain, ties split at random",
            "coverage": "share of replicates whose central posterior interval, from all draws, covers the true value",
            "intervals": list(sbc.INTERVAL_PROBS),
            "uniformity_test": "Pearson chi-square of the rank fractions over equal bins (rank_bins)",
            "tolerance": f"central {sbc.TOLERANCE_LEVEL:.0%} interval of Binomial(replicates, nominal) / replicates",
        },
        "convergence_thresholds": {
            "rhat_max": RHAT_MAX,
            "ess_min": ESS_MIN,
            "divergences_max": 0,
            "ebfmi_min": EBFMI_MIN,
        },
        "package_versions": _versions(),
        "models": {},
        "wall_seconds": {},
    }
    path = args.out / "calibration.json"
    status = 0
    for name in models:
        log.info("model %s: start", name)
        entry = calibrate_model(name, settings, replicates, args.seed)
        if entry["parameters"]:
            figure = write_model_figure(args.out / f"sbc_{name}.png", name, entry["parameters"])
            entry["figure"] = figure.name
            _log_verdict(name, entry)
        else:
            status = 1
        content["models"][name] = entry
        content["wall_seconds"][name] = entry["wall_seconds"]
        write_json(path, content)  # after each model, so a long run keeps what it has
        log.info(
            "model %s: done in %.0f s; %d of %d fits failed the convergence checks, %d raised an error",
            name,
            entry["wall_seconds"],
            entry["failed_convergence"],
            replicates,
            len(entry["fit_errors"]),
        )

    content["wall_seconds"]["total"] = round(time.perf_counter() - started, 1)
    content["complete"] = True
    write_json(path, content)
    outside = [
        f"{name} {parameter}"
        for name, entry in content["models"].items()
        for parameter, result in entry["parameters"].items()
        if not result["within_tolerance"]
    ]
    if outside:
        log.warning("outside the binomial tolerance: %s", ", ".join(outside))
    log.info("end: wrote %s in %.0f s", path, content["wall_seconds"]["total"])
    return status


if __name__ == "__main__":
    sys.exit(main())
