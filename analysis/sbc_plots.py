"""ECDF-difference plots of SBC rank fractions with simultaneous 95% bands, one panel per parameter.

Under calibration the rank fractions are uniform, so their ECDF minus the uniform CDF
stays near 0. The band (Säilynoja, Bürkner and Vehtari 2022, doi:10.1007/s11222-022-10090-6)
contains the whole curve of a uniform sample of that size with probability 0.95, so a
curve that leaves it marks a miscalibrated parameter. An arc above 0 means that true
values sit low in their posteriors (overestimation), an arc below 0 the reverse, and an
S shape a posterior that is too wide or too narrow.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are only written to files

import matplotlib.pyplot as plt
import numpy as np
from arviz.stats.ecdf_utils import ecdf_confidence_band

from data_gen.records import atomic_path

BAND_PROB = 0.95
EVAL_POINTS = np.linspace(0.0, 1.0, 101)[1:-1]
COLUMNS = 4
DPI = 150


def ecdf_difference(fractions: np.ndarray, eval_points: np.ndarray = EVAL_POINTS) -> np.ndarray:
    """Return the ECDF of ``fractions`` minus the uniform CDF at ``eval_points``."""
    fractions = np.sort(np.asarray(fractions, dtype=float))
    return np.searchsorted(fractions, eval_points, side="right") / fractions.size - eval_points


def draw_model_figure(title: str, parameters: dict[str, dict]):
    """Return a matplotlib figure with one ECDF-difference panel per parameter entry of calibration.json."""
    names = list(parameters)
    rows = max(1, math.ceil(len(names) / COLUMNS))
    columns = min(COLUMNS, max(1, len(names)))
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.4 * rows), squeeze=False, sharey=True)

    for ax, name in zip(axes.ravel(), names):
        entry = parameters[name]
        fractions = np.asarray(entry["rank_fractions"], dtype=float)
        lower, upper = ecdf_confidence_band(fractions.size, EVAL_POINTS, EVAL_POINTS, prob=BAND_PROB)
        ax.fill_between(EVAL_POINTS, lower - EVAL_POINTS, upper - EVAL_POINTS, color="#cccccc", label="95% band")
        colour = "#0072B2" if entry["within_tolerance"] else "#D55E00"
        ax.step(EVAL_POINTS, ecdf_difference(fractions), where="post", color=colour, lw=1.2)
        ax.axhline(0.0, color="#555555", lw=0.6)
        ax.set_title(
            f"{name}\n50%: {entry['coverage_50']:.2f}, 94%: {entry['coverage_94']:.2f}, p = {entry['rank_uniformity_p']:.2f}",
            fontsize=8,
        )
        ax.set_xlim(0, 1)

    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("rank fraction")
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF - uniform")

    replicates = max((entry["replicates"] for entry in parameters.values()), default=0)
    fig.suptitle(
        f"{title}: ECDF of SBC ranks minus uniform, {replicates} replicates, simultaneous {BAND_PROB:.0%} band\n"
        "panel titles: coverage of the central 50% and 94% intervals, chi-square p of rank uniformity",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def write_model_figure(path: Path, title: str, parameters: dict[str, dict]) -> Path:
    """Draw the ECDF-difference panels of one model and write them as PNG atomically."""
    fig = draw_model_figure(title, parameters)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    with atomic_path(Path(path)) as temporary:
        temporary.write_bytes(buffer.getvalue())
    return Path(path)
