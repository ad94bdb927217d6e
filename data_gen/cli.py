"""Command line of the data generator.

python -m data_gen --preset smoke
python -m data_gen --preset default --workers 2 --out data/default.nc
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from data_gen.config import (
    PRESETS,
    TOPOLOGIES,
    ConfigError,
    ExperimentConfig,
    load_config,
    load_preset,
    with_overrides,
)
from data_gen.sweep import run_sweep

log = logging.getLogger("data_gen")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers, e.g. 20,50,500"
        ) from None


def _topology_list(text: str) -> tuple[str, ...]:
    names = tuple(item.strip() for item in text.split(","))
    unknown = [name for name in names if name not in TOPOLOGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown topology {unknown}; choose from {', '.join(TOPOLOGIES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    defaults = ExperimentConfig()  # the built-in values, which configs/default.toml repeats
    t, p = defaults.training, defaults.probe
    parser = argparse.ArgumentParser(
        prog="python -m data_gen",
        description=(
            "Train many small MLPs, probe every gradient snapshot with the threshold-toppling "
            "avalanche probe, and write one NetCDF-4 file with groups /training and /avalanches."
        ),
    )
    source = parser.add_argument_group("configuration")
    source.add_argument(
        "--preset",
        choices=PRESETS,
        default="default",
        help="experiment preset from configs/<preset>.toml (default: default)",
    )
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML configuration file used instead of the preset; keys it omits keep the "
        "built-in defaults (default: none)",
    )

    overrides = parser.add_argument_group(
        "overrides", "Each replaces one value of the preset or config file; defaults are those of the default preset."
    )
    overrides.add_argument(
        "--scales",
        type=_int_list,
        metavar="H,H,...",
        help="hidden widths h in neurons, one scale each; XOR networks have N = 4h + 1 "
        f"parameters (default: {','.join(map(str, t.hidden))})",
    )
    overrides.add_argument("--seeds", type=int, metavar="N", help=f"runs per scale (default: {t.seeds})")
    overrides.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"training epochs per run, one full-batch step each (default: {t.epochs})",
    )
    overrides.add_argument(
        "--snapshot-every",
        type=int,
        metavar="N",
        help=f"epochs between gradient snapshots, from epoch 0 (default: {t.snapshot_every})",
    )
    overrides.add_argument(
        "--topologies",
        type=_topology_list,
        metavar="NAME,...",
        help=f"graphs for the synthetic Gaussian control (default: all of {', '.join(TOPOLOGIES)})",
    )
    overrides.add_argument(
        "--threshold",
        type=float,
        metavar="Z",
        help=f"toppling threshold z_c on the dimensionless load |g_i| / mean|g|, > 0 (default: {p.threshold})",
    )
    overrides.add_argument(
        "--alpha",
        type=float,
        metavar="A",
        help=f"fraction of a toppling node's load passed on to its neighbours, in (0, 1) (default: {p.alpha})",
    )

    run = parser.add_argument_group("output and execution")
    run.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="output NetCDF file (default: data/<preset>.nc, or data/<name>.nc with --config)",
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run shards on a new Dask LocalCluster of N worker processes on 127.0.0.1 (default: run in this process)",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run shards on an existing Dask scheduler, e.g. tcp://127.0.0.1:8786; its workers must "
        "import data_gen and see the output folder (default: none)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="reuse the complete shard files that an interrupted run with the same configuration "
        "left in <out>.shards/ (default: recompute every shard)",
    )
    run.add_argument(
        "--keep-shards",
        action="store_true",
        help="keep <out>.shards/ after the merged file is written (default: remove it)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar (default: shown)")
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default: INFO)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.workers is not None and args.workers < 1:
        log.error("--workers %d is invalid; give a number of worker processes >= 1.", args.workers)
        return 2
    if args.workers and args.scheduler:
        log.error("--workers and --scheduler exclude each other; pass one of them.")
        return 2

    try:
        config = load_config(args.config) if args.config else load_preset(args.preset)
        config = with_overrides(
            config,
            training__hidden=args.scales,
            training__seeds=args.seeds,
            training__epochs=args.epochs,
            training__snapshot_every=args.snapshot_every,
            synthetic__topologies=args.topologies,
            probe__threshold=args.threshold,
            probe__alpha=args.alpha,
        )
    except ConfigError as error:
        log.error("%s", error)
        return 2

    out = args.out or Path("data") / f"{config.name}.nc"
    with logging_redirect_tqdm():
        run_sweep(
            config,
            out,
            resume=args.resume,
            workers=args.workers,
            scheduler=args.scheduler,
            keep_shards=args.keep_shards,
            progress=not args.no_progress,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
