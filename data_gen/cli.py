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

from data_gen.config import PRESETS, TOPOLOGIES, ConfigError, load_config, load_preset, with_overrides
from data_gen.sweep import run_sweep

log = logging.getLogger("data_gen")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 20,50,500") from None


def _topology_list(text: str) -> tuple[str, ...]:
    names = tuple(item.strip() for item in text.split(","))
    unknown = [name for name in names if name not in TOPOLOGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown topology {unknown}; choose from {', '.join(TOPOLOGIES)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_gen",
        description=(
            "Train many small MLPs, probe every gradient snapshot with the threshold-toppling "
            "avalanche probe, and write one NetCDF-4 file with groups /training and /avalanches."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_argument_group("configuration")
    source.add_argument("--preset", choices=PRESETS, default="default",
                        help="experiment preset from configs/<preset>.toml")
    source.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML configuration file used instead of the preset; missing keys keep built-in defaults")

    overrides = parser.add_argument_group("overrides (default: the value in the preset or config file)")
    overrides.add_argument("--scales", type=_int_list, metavar="H,H,...", default=None,
                           help="hidden widths h (neurons), one scale each; N = 4h + 1 parameters for XOR")
    overrides.add_argument("--seeds", type=int, metavar="N", default=None, help="runs per scale")
    overrides.add_argument("--epochs", type=int, metavar="N", default=None,
                           help="training epochs per run (one full-batch step each)")
    overrides.add_argument("--snapshot-every", type=int, metavar="N", default=None,
                           help="epochs between gradient snapshots, starting at epoch 0")
    overrides.add_argument("--topologies", type=_topology_list, metavar="NAME,...", default=None,
                           help=f"graphs for the synthetic Gaussian control, from: {', '.join(TOPOLOGIES)}")
    overrides.add_argument("--threshold", type=float, metavar="Z", default=None,
                           help="toppling threshold z_c on the load |g_i| / mean|g| (dimensionless, > 0)")
    overrides.add_argument("--alpha", type=float, metavar="A", default=None,
                           help="fraction of a toppling node's load passed to its neighbours, in (0, 1)")

    run = parser.add_argument_group("output and execution")
    run.add_argument("--out", type=Path, metavar="PATH", default=None,
                     help="output NetCDF file (default: data/<preset>.nc, or data/<config name>.nc with --config)")
    run.add_argument("--workers", type=int, metavar="N", default=None,
                     help="run shards on a new Dask LocalCluster of N worker processes on 127.0.0.1 "
                          "(default: in-process)")
    run.add_argument("--scheduler", metavar="ADDRESS", default=None,
                     help="run shards on an existing Dask scheduler, e.g. tcp://127.0.0.1:8786; its workers must "
                          "import data_gen and see the output folder")
    run.add_argument("--resume", action="store_true",
                     help="reuse complete shard files of an interrupted run with the same configuration")
    run.add_argument("--keep-shards", action="store_true", help="keep <out>.shards/ after the merged file is written")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                     help="logging level")
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
