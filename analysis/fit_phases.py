"""Fit every model to one input file and write posteriors and summary.json.

    python -m analysis.fit_phases data/default.nc --out reports/default
    python -m analysis.fit_phases data/smoke.nc --quick

The whole input is validated before any sampling. Outputs in the report folder: one
InferenceData NetCDF per model, ``bootstrap_<phase>.npy`` with the published method's
resampled slopes, and ``summary.json`` (fields in docs/summary-json.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from pathlib import Path

from analysis.inputs import InputError, load_input
from analysis.pipeline import PUBLISHED, FitOptions, Stages
from analysis.results import write_json
from models.diagnostics import EBFMI_MIN, ESS_MIN, HDI_PROB, RHAT_MAX
from models.sampling import BACKENDS, SamplerSettings

log = logging.getLogger("analysis.fit_phases")

QUICK = {"draws": 200, "tune": 200, "chains": 2}


def build_parser() -> argparse.ArgumentParser:
    defaults = SamplerSettings()
    parser = argparse.ArgumentParser(
        prog="python -m analysis.fit_phases",
        description="Infer grokking epochs and phase-specific scaling exponents from an avalanche file.",
    )
    parser.add_argument(
        "input",
        nargs="?",
        type=Path,
        default=Path("data/default.nc"),
        help="records file from python -m data_gen, or an external avalanche file (default: data/default.nc)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="report folder (default: reports/<input file name without extension>)"
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=defaults.draws,
        help=f"kept draws per chain (default: {defaults.draws}; {QUICK['draws']} with --quick)",
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=defaults.tune,
        help=f"warm-up draws per chain (default: {defaults.tune}; {QUICK['tune']} with --quick)",
    )
    parser.add_argument(
        "--chains",
        type=int,
        default=defaults.chains,
        help=f"chains per fit (default: {defaults.chains}; {QUICK['chains']} with --quick)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed of every sampler (default: 0)")
    parser.add_argument(
        "--sampler",
        choices=BACKENDS,
        default="auto",
        help="NUTS implementation: nutpie when installed, else PyMC's own (default: auto)",
    )
    parser.add_argument(
        "--tau-draws",
        type=int,
        default=FitOptions.tau_draws,
        help="changepoint posterior draws over which the phase split is redone (default: "
        f"{FitOptions.tau_draws}; 0 keeps the plug-in split at the posterior median)",
    )
    parser.add_argument("--no-leave-one-scale-out", action="store_true", help="skip the leave-one-scale-out refits")
    parser.add_argument(
        "--gini-window",
        type=int,
        default=FitOptions.gini_window,
        metavar="EPOCHS",
        help=f"half-width in epochs of the window around tau searched for the Gini peak (default: "
        f"{FitOptions.gini_window})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short chains, 2 tau draws and 1,000 bootstrap resamples, for a first look in a couple "
        "of minutes; convergence checks will usually fail",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default: INFO)",
    )
    return parser


def options_from(args: argparse.Namespace) -> FitOptions:
    sampler = SamplerSettings(
        draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed, backend=args.sampler
    )
    options = FitOptions(
        sampler=sampler,
        tau_draws=args.tau_draws,
        gini_window=args.gini_window,
        leave_one_scale_out=not args.no_leave_one_scale_out,
    )
    if args.quick:
        quick = {k: v for k, v in QUICK.items() if getattr(args, k) == getattr(SamplerSettings(), k)}
        options = dataclasses.replace(
            options,
            sampler=dataclasses.replace(sampler, **quick),
            tau_draws=min(args.tau_draws, 2),
            bootstrap_resamples=1000,
        )
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    positive = (
        ("--draws", args.draws),
        ("--tune", args.tune),
        ("--chains", args.chains),
        ("--gini-window", args.gini_window),
    )
    for name, value in positive:
        if value < 1:
            log.error("%s %d is invalid; give a positive number.", name, value)
            return 2
    options = options_from(args)
    try:
        options.sampler.resolved_backend()
        data = load_input(args.input)
    except (InputError, ValueError) as error:
        log.error("%s", error)
        return 2

    out = args.out or Path("reports") / args.input.stem
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log.info(
        "start: %s (%s, %d scales, %d runs, %d snapshots) -> %s",
        data.path,
        data.kind,
        len(data.n_params),
        data.n_runs,
        len(data.snapshots.size),
        out,
    )

    from data_gen.provenance import package_versions

    versions = package_versions()
    for name in ("pymc", "arviz", "pytensor", "nutpie"):
        from importlib import metadata

        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    provenance = {"input_file": str(data.path), "input_sha256": data.sha256, "package_versions": versions}
    summary = Stages(data, options, out, provenance).run()

    failed = sorted(name for name, check in summary["diagnostics"].items() if not check["passed"])
    summary.update(
        {
            "input": {
                "path": str(data.path),
                "sha256": data.sha256,
                "kind": data.kind,
                "n_params": data.n_params.tolist(),
                "n_runs": data.n_runs,
                "n_snapshots": int(len(data.snapshots.size)),
                "dropped_snapshots": data.dropped,
            },
            "data_gen_config": data.config_toml,
            "sampler": {**dataclasses.asdict(options.sampler), "backend": options.sampler.resolved_backend()},
            "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "sampler"},
            "thresholds": {
                "rhat_max": RHAT_MAX,
                "ess_min": ESS_MIN,
                "divergences_max": 0,
                "ebfmi_min": EBFMI_MIN,
                "hdi_prob": HDI_PROB,
            },
            "all_checks_passed": not failed,
            "failed_fits": failed,
            "published": PUBLISHED,
            "package_versions": versions,
            "command": shlex.join([Path(sys.executable).name, "-m", "analysis.fit_phases", *(argv or sys.argv[1:])]),
        }
    )
    summary["wall_seconds"]["total"] = round(time.perf_counter() - started, 2)
    path = write_json(out / "summary.json", summary)
    if failed:
        log.warning("convergence checks failed for: %s (see summary.json 'diagnostics')", ", ".join(failed))
    log.info("wrote %s in %.0f s", path, summary["wall_seconds"]["total"])

    from analysis.report import render_report

    page = render_report(out)
    log.info("end: report at %s", page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
