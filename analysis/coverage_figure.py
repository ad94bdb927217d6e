"""The coverage study's figure: coverage per condition and method against nominal, and widths."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the study only writes files, so no display is needed

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from data_gen.records import atomic_path

DPI = 120
MARKERS = ("o", "s", "D", "^")
SLOT = 0.8  # share of each condition's x slot taken by its methods


def plot_coverage(summary: dict, rows: list[dict], path: Path) -> Path:
    """Draw coverage with Wilson intervals, nominal levels and binomial tolerances, and interval widths.

    ``summary`` is the content of coverage.json and ``rows`` the per-interval rows of
    replicates.csv. Writes a PNG at ``DPI`` atomically.
    """
    conditions = list(summary["conditions"])
    methods = list(summary["methods"])
    colours = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    step = SLOT / len(methods)
    offsets = {m: (k - (len(methods) - 1) / 2) * step for k, m in enumerate(methods)}

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    for c, condition in enumerate(conditions):
        for k, method in enumerate(methods):
            entry = summary["conditions"][condition]["methods"][method]
            x = c + offsets[method]
            low, high = entry["tolerance"]
            left.add_patch(plt.Rectangle((x - step / 2, low), step, high - low, color="0.88", lw=0))
            left.hlines(entry["nominal"], x - step / 2, x + step / 2, color="black", lw=1.2)
            wilson_low, wilson_high = entry["coverage_wilson_interval"]
            left.errorbar(
                x,
                entry["coverage"],
                yerr=[[entry["coverage"] - wilson_low], [wilson_high - entry["coverage"]]],
                fmt=MARKERS[k % len(MARKERS)],
                color=colours[method],
                capsize=3,
                ms=6,
            )
    left.set_xticks(range(len(conditions)), conditions)
    left.set_xlim(-0.5, len(conditions) - 0.5)
    left.set_xlabel("simulation condition")
    left.set_ylabel("coverage of the true D (bars: Wilson 95% interval)")
    left.set_title(f"Coverage over {summary['replicates']} replicates per condition")
    handles = [
        Line2D(
            [],
            [],
            color=colours[m],
            marker=MARKERS[k % len(MARKERS)],
            ls="",
            label=f"{m} (nominal {summary['methods'][m]['nominal']:.2f})",
        )
        for k, m in enumerate(methods)
    ]
    handles += [
        Line2D([], [], color="black", lw=1.2, label="nominal level"),
        Patch(color="0.88", label=f"binomial {summary['tolerance_level']:.0%} tolerance"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)

    for c, condition in enumerate(conditions):
        for k, method in enumerate(methods):
            widths = np.array(
                [r["high"] - r["low"] for r in rows if r["condition"] == condition and r["method"] == method]
            )
            x = c + offsets[method]
            box = right.boxplot(
                widths, positions=[x], widths=step * 0.8, patch_artist=True, showfliers=False, manage_ticks=False
            )
            box["boxes"][0].set(facecolor=colours[method], alpha=0.5)
            box["medians"][0].set(color="black")
            right.plot(x, widths.mean(), marker=MARKERS[k % len(MARKERS)], color=colours[method], ms=5, mec="black")
    right.set_xticks(range(len(conditions)), conditions)
    right.set_xlim(-0.5, len(conditions) - 0.5)
    right.set_xlabel("simulation condition")
    right.set_ylabel("interval width (units of D)")
    right.set_title("Interval widths (box: quartiles, line: median, marker: mean)", fontsize=10)

    with atomic_path(Path(path)) as temporary:
        fig.savefig(temporary, format="png", dpi=DPI)
    plt.close(fig)
    return Path(path)
