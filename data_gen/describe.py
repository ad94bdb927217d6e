"""Print a per-scale summary of a records file: runs grokked, grokking epochs and avalanches.

python -m data_gen.describe data/default.nc
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from data_gen.records import RecordsError, open_records
from data_gen.schema import SOURCES


def describe(path: str) -> str:
    """Return a plain-text table of one records file, one row per scale."""
    tree = open_records(path)
    training = tree["training"].to_dataset()
    avalanches = tree["avalanches"].to_dataset()
    real = avalanches["source"].values == SOURCES.index("real")
    scale_of_snapshot = avalanches["scale"].values
    size = avalanches["size"].values
    valid = avalanches["valid"].values == 1

    lines = [
        f"{path}: {training.sizes['scale']} scales x {training.sizes['seed']} seeds, "
        f"{training.sizes['epoch']} epochs, {avalanches.sizes['snapshot']} snapshots",
        f"{'h':>5} {'N':>6} {'grokked':>9} {'tau min':>8} {'q10':>6} {'median':>7} {'q90':>6} {'max':>6}"
        f" {'mean size (real)':>17} {'invalid':>8}",
    ]
    for scale, (h, n_params) in enumerate(zip(training["h"].values, training["n_params"].values, strict=True)):
        tau = training["grok_epoch"].values[scale]
        grokked = tau[tau >= 0]
        in_scale = scale_of_snapshot == scale
        sizes = size[in_scale & real & valid]
        quantiles = np.quantile(grokked, [0.0, 0.1, 0.5, 0.9, 1.0]) if len(grokked) else [np.nan] * 5
        mean_size = sizes.mean() if len(sizes) else np.nan
        lines.append(
            f"{h:>5} {n_params:>6} {len(grokked):>4}/{len(tau):<4} "
            + " ".join(f"{q:>{w}.0f}" for q, w in zip(quantiles, (8, 6, 7, 6, 6), strict=True))
            + f" {mean_size:>17.1f} {int((in_scale & ~valid).sum()):>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_gen.describe", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="records file written by python -m data_gen")
    args = parser.parse_args(argv)
    try:
        print(describe(args.path))
    except RecordsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
