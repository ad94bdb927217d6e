"""Render a fit_phases report folder as one self-contained HTML page with figures and tables.

    python -m analysis.report reports/default

Reads only the report folder (the InferenceData files, ``bootstrap_<phase>.npy`` and
``summary.json``) and the records file that ``summary.json`` names under ``input.path``.
Writes ``summary.html`` (CSS inline, every figure a base64 data URI, no scripts),
``figures/*.png`` at 200 dpi, ``figures/*.svg`` for the line and point plots, and
``tables/<model>_summary.csv`` (``az.summary`` of each model's posterior).

Each figure is drawn inside its own ``try``: a figure that fails is logged and replaced
on the page by a note, and the rest of the report is still written.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report only writes files; no display is needed

import arviz as az
import jinja2
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import seaborn as sns

from analysis.report_calibration import calibration_context
from analysis.results import load_idata

log = logging.getLogger(__name__)

MODELS = (
    "changepoint",
    "fss_D",
    "fss_D_plugin",
    "fss_single_D",
    "fss_gamma",
    "fss_D_max",
    "dynamics",
    "topology",
    "gini_lag",
)
PHASES = ("pre", "post", "synthetic")
PHASE_LABELS = {"pre": "before grokking", "post": "after grokking", "synthetic": "synthetic control", "all": "all"}
# Okabe-Ito colours, distinguishable with the common colour-vision deficiencies; one per phase everywhere.
PHASE_COLOURS = {"pre": "#0072B2", "post": "#D55E00", "synthetic": "#009E73", "all": "#000000"}
NEUTRAL = "#555555"
DPI = 200  # files in figures/, for print
INLINE_DPI = 110  # PNGs inside summary.html, small enough to mail
CSS_DPI = 96  # CSS pixels per inch
HDI_PROB = 0.94
NO_TRANSITION = -1
TEMPLATE = Path(__file__).with_name("templates") / "summary.html.j2"

# Parameters shown in the trace and forest plots; the others are offsets, transforms or
# per-run values that would only crowd the plots.
MAIN_VARIABLES = {
    "changepoint": ["mu", "beta", "sigma", "mixture_weights"],
    "fss_D": ["D", "intercept", "sigma", "tau_run"],
    "fss_D_plugin": ["D", "intercept", "sigma", "tau_run"],
    "fss_single_D": ["D", "intercept", "sigma", "tau_run"],
    "fss_gamma": ["gamma", "intercept", "sigma"],
    "fss_D_max": ["D_max", "intercept", "sigma"],
    "dynamics": ["D_step", "a_step", "sigma"],
    "topology": ["D0", "D_sd", "sigma"],
    "gini_lag": ["mu", "mu_sd", "sigma", "nu"],
}
STYLE = {
    **sns.axes_style("whitegrid"),
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "svg.fonttype": "none",
    "svg.hashsalt": "grokking-avalanches",
}


class FigureUnavailable(Exception):
    """A figure whose inputs are absent (a missing file or summary entry), named in its message."""


# -- inputs ----------------------------------------------------------------------------


@dataclass
class ReportData:
    """Everything the report reads: summary.json, the InferenceData files and the records file."""

    folder: Path
    summary: dict
    idata: dict[str, az.InferenceData] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    bootstrap: dict[str, np.ndarray] = field(default_factory=dict)
    training: object | None = None  # xarray.Dataset of /training
    avalanches: object | None = None  # xarray.Dataset of /avalanches
    input_note: str = ""
    input_sha256_now: str | None = None

    def model(self, name: str) -> az.InferenceData:
        if name not in self.idata:
            reason = self.load_errors.get(name, f"{name}.nc is not in the report folder")
            raise FigureUnavailable(reason)
        return self.idata[name]

    def records(self):
        if self.training is None or self.avalanches is None:
            raise FigureUnavailable(f"needs the input records file: {self.input_note}")
        return self.training, self.avalanches

    def entry(self, *keys):
        value = self.summary
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                raise FigureUnavailable(f"summary.json has no {'.'.join(keys)}")
            value = value[key]
        return value


def load_report_data(folder: Path) -> ReportData:
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found; run `python -m analysis.fit_phases` with --out {folder}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    data = ReportData(folder=folder, summary=summary)

    for name in MODELS:
        path = folder / f"{name}.nc"
        if not path.is_file():
            continue
        try:
            data.idata[name] = load_idata(path)
        except (OSError, ValueError, KeyError) as error:
            log.error("failed to read %s: %s; its figures are left out", path, error)
            data.load_errors[name] = f"{path.name} could not be read ({error})"

    for path in sorted(folder.glob("bootstrap_*.npy")):
        data.bootstrap[path.stem.removeprefix("bootstrap_")] = np.load(path)

    _load_records(data)
    return data


def _load_records(data: ReportData) -> None:
    from analysis.inputs import file_sha256
    from data_gen import RecordsError, open_records

    path_text = (data.summary.get("input") or {}).get("path")
    if not path_text:
        data.input_note = "summary.json names no input file (input.path)"
        return
    path = Path(path_text)
    if not path.is_file():
        data.input_note = f"the input file {path} was not found"
        log.warning("%s; figures that need it are left out", data.input_note)
        return
    if (data.summary.get("input") or {}).get("kind", "records") != "records":
        data.input_note = f"the input file {path} is an external avalanche file without training curves"
        return
    try:
        with open_records(path) as tree:
            data.training = tree["training"].to_dataset().load()
            data.avalanches = tree["avalanches"].to_dataset().load()
    except RecordsError as error:
        data.input_note = f"the input file could not be read: {error}"
        log.warning("%s", data.input_note)
        return
    data.input_sha256_now = file_sha256(path)


# -- shared helpers --------------------------------------------------------------------


def run_tau_median(changepoint: az.InferenceData) -> np.ndarray:
    """Posterior median of tau per run given a transition; NaN where no transition is most probable."""
    probability = changepoint.changepoint["tau_probability"]
    values = probability["tau_value"].values
    table = probability.values
    transition = values != NO_TRANSITION
    p_transition = table[:, transition].sum(axis=1)
    conditional = table[:, transition] / np.where(p_transition > 0, p_transition, 1.0)[:, None]
    cumulative = np.cumsum(conditional, axis=1)
    median = values[transition][np.argmax(cumulative >= 0.5, axis=1)].astype(float)
    median[p_transition < 0.5] = np.nan
    return median


def scale_palette(n: int) -> list:
    """Colours of the network sizes: viridis, ordered and readable with colour-vision deficiencies."""
    return sns.color_palette("viridis", n)


def _phases_in(summary_block: dict) -> list[str]:
    return [
        p
        for p in (*PHASES, "all")
        if isinstance(summary_block.get(p), dict) and summary_block[p].get("mean") is not None
    ]


def _real_snapshots(data: ReportData):
    """Sizes, run index, scale index and epoch of the valid real snapshots with size > 0."""
    training, avalanches = data.records()
    keep = (avalanches["source"].values == 0) & (avalanches["valid"].values == 1) & (avalanches["size"].values > 0)
    n_seeds = training.sizes["seed"]
    scale = avalanches["scale"].values[keep].astype(int)
    run = scale * n_seeds + avalanches["seed"].values[keep].astype(int)
    return avalanches["size"].values[keep].astype(float), run, scale, avalanches["epoch"].values[keep].astype(int)


def _snapshot_phase(data: ReportData, run: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    tau = run_tau_median(data.model("changepoint"))
    run_tau = tau[run]
    return np.where(np.isnan(run_tau), "", np.where(epoch < run_tau, "pre", "post"))


def _ccdf(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(S > s) at each distinct size s, leaving out the largest (where it is 0)."""
    values, counts = np.unique(sizes, return_counts=True)
    exceed = 1.0 - np.cumsum(counts) / counts.sum()
    return values[:-1], exceed[:-1]


# -- figures from the data and summary -------------------------------------------------


def figure_accuracy(data: ReportData):
    training, _ = data.records()
    changepoint = data.model("changepoint")
    accuracy = training["train_acc"].values
    n_scales, n_seeds, n_epochs = accuracy.shape
    tau = run_tau_median(changepoint)
    probability = changepoint.changepoint["tau_probability"]
    tau_values = probability["tau_value"].values
    chosen_scales = np.unique(np.linspace(0, n_scales - 1, min(4, n_scales)).round().astype(int))

    fig, axes = plt.subplots(1, len(chosen_scales), figsize=(3.0 * len(chosen_scales), 2.8), sharey=True, squeeze=False)
    for ax, scale in zip(axes[0], chosen_scales):
        runs = np.arange(scale * n_seeds, (scale + 1) * n_seeds)
        finite = runs[np.isfinite(tau[runs])]
        # The run whose tau is the median of its scale, so the panel shows a typical run.
        run = finite[np.argsort(tau[finite])[len(finite) // 2]] if len(finite) else runs[0]
        epochs = np.arange(n_epochs)
        ax.plot(epochs, accuracy[scale, run - scale * n_seeds], color=NEUTRAL, lw=1.0, label="training accuracy")
        ax.set_xlabel("epoch")
        ax.set_title(f"N = {int(training['n_params'].values[scale])}, run {run - scale * n_seeds}")
        twin = ax.twinx()
        mass = probability.values[run]
        shown = tau_values != NO_TRANSITION
        twin.fill_between(
            tau_values[shown], mass[shown], step="mid", color=PHASE_COLOURS["post"], alpha=0.5, label="posterior P(tau)"
        )
        twin.set_ylim(0, max(mass[shown].max() * 1.1, 1e-3))
        twin.set_ylabel("posterior P(tau)")
        twin.grid(False)
        if not shown.all() and mass[~shown].sum() > 0.01:
            ax.text(0.02, 0.05, f"P(no transition) = {mass[~shown].sum():.2f}", transform=ax.transAxes, fontsize=7)
    axes[0][0].set_ylabel("training accuracy (fraction)")
    handles = [*axes[0][0].get_legend_handles_labels()[0], *twin.get_legend_handles_labels()[0]]
    axes[0][0].legend(handles=handles, loc="center right")
    fig.tight_layout()
    return fig


def figure_tau_vs_n(data: ReportData):
    changepoint = data.model("changepoint")
    per_scale = data.entry("changepoints", "per_scale")
    tau = run_tau_median(changepoint)
    scale_index = changepoint.constant_data["scale_index"].values
    n_params = np.array([entry["n_params"] for entry in per_scale], dtype=float)

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    rng = np.random.default_rng(0)
    jitter = np.exp(rng.uniform(-0.05, 0.05, len(tau)))
    ax.scatter(n_params[scale_index] * jitter, tau, s=10, color=NEUTRAL, alpha=0.5, label="run (posterior median)")
    means = [entry["tau"]["mean"] for entry in per_scale]
    present = np.array([m is not None for m in means])
    if present.any():
        mean = np.array([entry["tau"]["mean"] for entry in per_scale if entry["tau"]["mean"] is not None])
        low = np.array([entry["tau"]["hdi_low"] for entry in per_scale if entry["tau"]["mean"] is not None])
        high = np.array([entry["tau"]["hdi_high"] for entry in per_scale if entry["tau"]["mean"] is not None])
        ax.errorbar(
            n_params[present],
            mean,
            yerr=[mean - low, high - mean],
            fmt="o",
            color=PHASE_COLOURS["post"],
            capsize=3,
            label="scale: mean, 94% HDI",
        )
    ax.set_xscale("log")
    ax.set_xlabel("network size N (parameters)")
    ax.set_ylabel("grokking epoch tau (epochs)")
    ax.legend()
    fig.tight_layout()
    return fig


def figure_gini(data: ReportData):
    training, _ = data.records()
    tau = run_tau_median(data.model("changepoint"))
    gini = training["gini_abs_theta"].values.astype(float)
    n_scales, n_seeds, n_epochs = gini.shape
    offsets = np.arange(-n_epochs + 1, n_epochs)
    colours = scale_palette(n_scales)

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for scale in range(n_scales):
        aligned = np.full((n_seeds, len(offsets)), np.nan)
        for seed in range(n_seeds):
            run_tau = tau[scale * n_seeds + seed]
            if np.isnan(run_tau):
                continue
            start = n_epochs - 1 - int(run_tau)
            aligned[seed, start : start + n_epochs] = gini[scale, seed]
        enough = np.isfinite(aligned).sum(axis=0) >= max(1, n_seeds // 2)
        if not enough.any():
            continue
        median = np.nanmedian(aligned[:, enough], axis=0)
        low, high = np.nanpercentile(aligned[:, enough], [25, 75], axis=0)
        label = f"N = {int(training['n_params'].values[scale])}"
        ax.plot(offsets[enough], median, color=colours[scale], lw=1.2, label=label)
        ax.fill_between(offsets[enough], low, high, color=colours[scale], alpha=0.2, lw=0)
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("epoch - tau (epochs)")
    ax.set_ylabel("Gini coefficient of |theta|")
    ax.set_title("median over runs, band: interquartile range")
    ax.legend(ncol=2)
    fig.tight_layout()
    return fig


def figure_d_of_t(data: ReportData):
    d_t = data.entry("D_t")
    centres = np.asarray(d_t["bin_centres"], dtype=float)
    rows = [entry if entry.get("mean") is not None else None for entry in d_t["D"]]
    keep = np.array([row is not None for row in rows])
    mean = np.array([row["mean"] for row in rows if row is not None])
    low = np.array([row["hdi_low"] for row in rows if row is not None])
    high = np.array([row["hdi_high"] for row in rows if row is not None])

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.fill_between(centres[keep], low, high, color=NEUTRAL, alpha=0.25, lw=0, label="94% HDI")
    ax.plot(centres[keep], mean, color="black", lw=1.2, marker="o", ms=3, label="posterior mean D(t)")
    ax.axhline(1.0, color=PHASE_COLOURS["synthetic"], lw=1.0, ls=":", label="D = 1")
    ax.axvline(0.0, color="black", lw=0.8, ls="--")
    crossing = data.summary.get("crossing") or {}
    if crossing.get("mean") is not None:
        ax.axvspan(
            crossing["hdi_low"],
            crossing["hdi_high"],
            color=PHASE_COLOURS["post"],
            alpha=0.12,
            label=f"{'downward' if crossing.get('direction') == 'down' else 'upward'} crossing, 94% HDI",
        )
        ax.axvline(crossing["mean"], color=PHASE_COLOURS["post"], lw=1.0, label="crossing, posterior mean")
    ax.set_xlabel("epoch - tau (epochs, bin centres)")
    ax.set_ylabel("scaling exponent D (dimensionless)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _ccdf_panels(data: ReportData, collapse: bool):
    training, _ = data.records()
    sizes, run, scale, epoch = _real_snapshots(data)
    n_params = training["n_params"].values.astype(float)
    phase = _snapshot_phase(data, run, epoch)
    exponents = data.entry("D") if collapse else {}
    phases = [p for p in ("pre", "post") if (phase == p).any()]
    if collapse:
        phases = [p for p in phases if (exponents.get(p) or {}).get("mean") is not None]
    if not phases:
        raise FigureUnavailable("no real snapshot has a phase (no run has a most probable transition)")
    colours = scale_palette(len(n_params))

    fig, axes = plt.subplots(1, len(phases), figsize=(3.6 * len(phases), 3.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], phases):
        for index, n in enumerate(n_params):
            chosen = sizes[(phase == name) & (scale == index)]
            if len(chosen) < 2:
                continue
            values, exceed = _ccdf(chosen)
            if collapse:
                values = values / n ** exponents[name]["mean"]
            ax.step(values, exceed, where="post", color=colours[index], lw=1.1, label=f"N = {int(n)}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Label 1, 2 and 5 times each power of ten in plain numbers: matplotlib's own labels
        # of minor ticks collide on axes that span less than a decade.
        ax.xaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        title = PHASE_LABELS[name]
        if collapse:
            title += f", D = {exponents[name]['mean']:.3f}"
            ax.set_xlabel("s / N^D (topplings / parameters^D)")
        else:
            ax.set_xlabel("avalanche size s (topplings)")
        ax.set_title(title, color=PHASE_COLOURS[name])
    axes[0][0].set_ylabel("P(S > s)")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def figure_ccdf(data: ReportData):
    return _ccdf_panels(data, collapse=False)


def figure_collapse(data: ReportData):
    return _ccdf_panels(data, collapse=True)


def _scaling_panel(ax, data: ReportData, model: str, exponent: str, ylabel: str) -> None:
    idata = data.model(model)
    n_params = np.asarray(data.entry("input", "n_params"), dtype=float)
    log_n = np.log(n_params)
    centre = log_n.mean()
    constant = idata.constant_data
    response = constant["group_mean"].values
    group_phase = constant["group_phase"].values.astype(int)
    group_scale = constant["group_scale"].values.astype(int)
    phase_names = list(idata.posterior["phase"].values)
    grid = np.linspace(log_n.min(), log_n.max(), 50)
    rng = np.random.default_rng(0)

    for index, name in enumerate(phase_names):
        rows = group_phase == index
        if not rows.any():
            continue
        colour = PHASE_COLOURS.get(name, NEUTRAL)
        jitter = np.exp(rng.uniform(-0.04, 0.04, rows.sum()))
        ax.scatter(n_params[group_scale[rows]] * jitter, np.exp(response[rows]), s=6, alpha=0.35, color=colour)
        intercept = idata.posterior["intercept"].sel(phase=name).values.ravel()
        slope = idata.posterior[exponent].sel(phase=name).values.ravel()
        lines = intercept[:, None] + slope[:, None] * (grid - centre)[None, :]
        band = az.hdi(lines[None, :, :], hdi_prob=HDI_PROB)
        ax.fill_between(np.exp(grid), np.exp(band[:, 0]), np.exp(band[:, 1]), color=colour, alpha=0.25, lw=0)
        ax.plot(
            np.exp(grid),
            np.exp(lines.mean(axis=0)),
            color=colour,
            lw=1.3,
            label=f"{PHASE_LABELS.get(name, name)}: {exponent} = {slope.mean():.3f}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network size N (parameters)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def figure_size_scaling(data: ReportData):
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4))
    notes = []
    for ax, (model, exponent, ylabel) in zip(
        axes,
        (
            ("fss_D_max", "D_max", "largest size in window s_max (topplings)"),
            ("fss_gamma", "gamma", "mean size per run <s> (topplings)"),
        ),
    ):
        try:
            _scaling_panel(ax, data, model, exponent, ylabel)
        except FigureUnavailable as reason:
            notes.append(str(reason))
            ax.set_axis_off()
            ax.text(0.5, 0.5, str(reason), ha="center", va="center", wrap=True, transform=ax.transAxes)
    if len(notes) == 2:
        plt.close(fig)
        raise FigureUnavailable("; ".join(notes))
    fig.tight_layout()
    return fig


def figure_exponent_posteriors(data: ReportData):
    sources = []
    for model, variable in (("fss_D", "D"), ("fss_D_plugin", "D"), ("fss_D_max", "D_max")):
        if model in data.idata:
            if variable == "D" and any(v == "D" for _, v, _ in sources):
                continue  # fss_D (tau propagated) is the headline; the plug-in fit is used only when it is missing
            sources.append((model, variable, data.idata[model]))
    if not sources and not data.bootstrap:
        raise FigureUnavailable("no fss_D, fss_D_plugin or fss_D_max file and no bootstrap slopes")
    phases = [
        p
        for p in (*PHASES, "all")
        if p in data.bootstrap or any(p in idata.posterior[variable]["phase"].values for _, variable, idata in sources)
    ]

    fig, axes = plt.subplots(1, len(phases), figsize=(3.2 * len(phases), 3.0), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        colour = PHASE_COLOURS.get(phase, NEUTRAL)
        for model, variable, idata in sources:
            if phase not in idata.posterior[variable]["phase"].values:
                continue
            draws = idata.posterior[variable].sel(phase=phase).values.ravel()
            style = "-" if variable == "D" else "--"
            sns.kdeplot(x=draws, ax=ax, color=colour, ls=style, lw=1.3, label=f"posterior {variable} ({model})")
        if phase in data.bootstrap:
            ax.hist(
                data.bootstrap[phase],
                bins=40,
                density=True,
                color=NEUTRAL,
                alpha=0.35,
                label="bootstrap, published estimator",
            )
        ax.set_title(PHASE_LABELS.get(phase, phase), color=colour)
        ax.set_xlabel("exponent (dimensionless)")
        ax.set_ylabel("density")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def figure_leave_one_scale_out(data: ReportData):
    entries = data.summary.get("leave_one_scale_out")
    if not entries:
        raise FigureUnavailable("summary.json has no leave-one-scale-out refits (fit_phases ran without them)")
    full = data.summary.get("D") or {}
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    phases = [p for p in (*PHASES, "all") if any(p in entry["D"] for entry in entries)]
    offsets = dict(zip(phases, np.linspace(-0.04, 0.04, len(phases))))
    for phase in phases:
        colour = PHASE_COLOURS.get(phase, NEUTRAL)
        rows = [(e["left_out_n_params"], e["D"][phase]) for e in entries if (e["D"].get(phase) or {}).get("mean")]
        if not rows:
            continue
        n = np.array([r[0] for r in rows], dtype=float) * np.exp(offsets[phase])
        mean = np.array([r[1]["mean"] for r in rows])
        low = np.array([r[1]["hdi_low"] for r in rows])
        high = np.array([r[1]["hdi_high"] for r in rows])
        ax.errorbar(
            n,
            mean,
            yerr=[mean - low, high - mean],
            fmt="o",
            color=colour,
            capsize=3,
            label=PHASE_LABELS.get(phase, phase),
        )
        if (full.get(phase) or {}).get("mean") is not None:
            ax.axhspan(full[phase]["hdi_low"], full[phase]["hdi_high"], color=colour, alpha=0.12, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("network size left out N (parameters)")
    ax.set_ylabel("D without that size (dimensionless)")
    ax.set_title("bands: 94% HDI of D from all sizes")
    ax.legend()
    fig.tight_layout()
    return fig


def figure_topology(data: ReportData):
    topology = data.entry("topology")
    names = list(topology["D"])
    mean = np.array([topology["D"][n]["mean"] for n in names])
    low = np.array([topology["D"][n]["hdi_low"] for n in names])
    high = np.array([topology["D"][n]["hdi_high"] for n in names])
    fig, ax = plt.subplots(figsize=(5.0, 0.45 * len(names) + 1.4))
    positions = np.arange(len(names))
    band_low, band_high = topology["band"]
    ax.axvspan(band_low, band_high, color=PHASE_COLOURS["synthetic"], alpha=0.12, lw=0, label="band around 1")
    ax.errorbar(
        mean,
        positions,
        xerr=[mean - low, high - mean],
        fmt="o",
        color=PHASE_COLOURS["synthetic"],
        capsize=3,
        label="D per topology, 94% HDI",
    )
    d0 = topology["D0"]
    ax.axvline(d0["mean"], color="black", lw=1.0, ls="--", label=f"shared D0 = {d0['mean']:.3f}")
    ax.set_yticks(positions, [n.replace("_", " ") for n in names])
    ax.set_xlabel("scaling exponent D of the synthetic control (dimensionless)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# -- ArviZ figures per model -----------------------------------------------------------


def _main_variables(name: str, idata: az.InferenceData) -> list[str]:
    return [v for v in MAIN_VARIABLES.get(name, []) if v in idata.posterior.data_vars]


def _figure_of(axes):
    return np.ravel(axes)[0].figure


def make_trace(name: str) -> Callable:
    def draw(data: ReportData):
        idata = data.model(name)
        axes = az.plot_trace(idata, var_names=_main_variables(name, idata), compact=True, figsize=(8, 6))
        fig = _figure_of(axes)
        fig.tight_layout()
        return fig

    return draw


def make_energy(name: str) -> Callable:
    def draw(data: ReportData):
        ax = az.plot_energy(data.model(name), figsize=(4.5, 3.0))
        return _figure_of(ax)

    return draw


def _changepoint_ppc(idata: az.InferenceData):
    """Mean training accuracy per epoch of the predicted runs: observed against predictive draws.

    A density of accuracy values would mix epochs before and after grokking; the curve over
    epochs is what the changepoint model has to reproduce.
    """
    predicted = idata.posterior_predictive["y"]
    runs = predicted["run"].values if "run" in predicted.coords else np.arange(predicted.sizes["ppc_run"])
    observed = idata.observed_data["y"].sel(run=runs)
    config = idata.attrs.get("changepoint_config", "{}")
    config = json.loads(config) if isinstance(config, str) else dict(config)
    n_trials = float(config.get("n_trials") or 1)
    curves = predicted.mean("ppc_run").stack(sample=("chain", "draw")).values / n_trials
    epochs = predicted["epoch"].values
    low, high = np.quantile(curves, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2], axis=1)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.fill_between(epochs, low, high, color=PHASE_COLOURS["pre"], alpha=0.3, lw=0, label="posterior predictive, 94% interval")
    ax.plot(epochs, np.median(curves, axis=1), color=PHASE_COLOURS["pre"], lw=1, label="posterior predictive, median")
    ax.plot(epochs, observed.mean("run").values / n_trials, color="black", lw=1.2, label="observed")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training accuracy (fraction)")
    ax.set_title(f"{len(runs)} runs", fontsize=9)
    ax.legend(loc="lower right")
    return fig


def make_ppc(name: str) -> Callable:
    def draw(data: ReportData):
        idata = data.model(name)
        if "posterior_predictive" not in idata.groups():
            raise FigureUnavailable(f"{name}.nc has no posterior_predictive group")
        if name == "changepoint":
            return _changepoint_ppc(idata)
        predicted = list(idata.posterior_predictive.data_vars)
        variable = "group" if "group" in predicted else predicted[0]
        axes = az.plot_ppc(idata, var_names=variable, num_pp_samples=50, random_seed=0, figsize=(5, 3.2))
        # Heavy-tailed predictive draws (Student-t) can stretch the axis far past the data.
        low, high = np.nanquantile(idata.observed_data[variable].values, [0.0, 1.0])
        margin = 0.5 * (high - low) if high > low else 1.0
        for ax in np.ravel(axes):
            ax.set_xlim(low - margin, high + margin)
        return _figure_of(axes)

    return draw


def make_pareto_k(name: str) -> Callable:
    def draw(data: ReportData):
        idata = data.model(name)
        if "log_likelihood" not in idata.groups():
            raise FigureUnavailable(f"{name}.nc has no log_likelihood group")
        variable = "group" if "group" in idata.log_likelihood.data_vars else next(iter(idata.log_likelihood.data_vars))
        target = idata
        label = f"observation of '{variable}'"
        has_within = "constant_data" in idata.groups() and "within_group" in idata.constant_data
        if has_within and {"group", "within"} <= set(idata.log_likelihood.data_vars):
            # A run-phase group's likelihood is its mean term plus its within-run term, as in
            # the LOO of summary.json; the k values are for that sum.
            total = idata.log_likelihood["group"].copy()
            within = idata.log_likelihood["within"].values
            np.add.at(total.values, (..., idata.constant_data["within_group"].values.astype(int)), within)
            posterior = idata.posterior.sel(draw=total["draw"])  # the draws the log-likelihood was computed on
            target = az.InferenceData(log_likelihood=total.to_dataset(name="group"), posterior=posterior)
            label = "run-phase group (mean and within-run terms)"
        with warnings.catch_warnings():
            # High k values trigger a UserWarning per model; the plot itself shows them.
            warnings.simplefilter("ignore", UserWarning)
            loo = az.loo(target, pointwise=True, var_name=variable)
        ax = az.plot_khat(loo, figsize=(5, 3.0), show_hlines=True)
        ax.set_title(f"PSIS-LOO Pareto k per {label}")
        return _figure_of(ax)

    return draw


def figure_exponent_hdi(data: ReportData):
    variables = [(m, v) for m, v in (("fss_D", "D"), ("fss_D_max", "D_max"), ("fss_gamma", "gamma")) if m in data.idata]
    if "fss_D" not in data.idata and "fss_D_plugin" in data.idata:
        variables.insert(0, ("fss_D_plugin", "D"))
    if not variables:
        raise FigureUnavailable("no scaling-exponent file (fss_D, fss_D_plugin, fss_D_max, fss_gamma)")
    n_phases = max(data.idata[m].posterior[v].sizes["phase"] for m, v in variables)
    fig, axes = plt.subplots(len(variables), n_phases, figsize=(2.8 * n_phases, 2.2 * len(variables)), squeeze=False)
    for row, (model, variable) in zip(axes, variables):
        az.plot_posterior(
            data.idata[model],
            var_names=[variable],
            hdi_prob=HDI_PROB,
            ref_val=1.0,
            ax=row[: data.idata[model].posterior[variable].sizes["phase"]],
            textsize=7,
            round_to=4,
        )
        for ax in row:
            ax.xaxis.set_major_locator(mticker.MaxNLocator(4))
    fig.tight_layout()
    return fig


def figure_forest(data: ReportData):
    chosen = [
        (m, v)
        for m, v in (
            ("fss_D", "D"),
            ("fss_D_plugin", "D"),
            ("fss_single_D", "D"),
            ("fss_D_max", "D_max"),
            ("fss_gamma", "gamma"),
        )
        if m in data.idata
    ]
    if not chosen:
        raise FigureUnavailable("no scaling-exponent file")
    fig, axes = plt.subplots(len(chosen), 1, figsize=(6.5, 1.5 * len(chosen)), squeeze=False, sharex=True)
    for ax, (model, variable) in zip(axes[:, 0], chosen):
        az.plot_forest(data.idata[model], var_names=[variable], combined=True, hdi_prob=HDI_PROB, ax=ax, textsize=9)
        ax.axvline(1.0, color=NEUTRAL, lw=0.8, ls=":")
        ax.set_title(f"{model}: {variable}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("exponent (dimensionless)")
    fig.tight_layout()
    return fig


# -- figure registry and rendering -----------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    """One figure: file stem, heading, caption, drawing function, and whether it is also saved as SVG."""

    name: str
    title: str
    caption: str
    draw: Callable[[ReportData], object]
    vector: bool = False
    section: str = "results"


FIGURES: list[FigureSpec] = [
    FigureSpec(
        "accuracy_tau",
        "Training accuracy and the posterior of tau",
        "Typical runs (the median tau of their size) at up to four sizes; the shaded area is each run's "
        "posterior probability of the grokking epoch.",
        figure_accuracy,
    ),
    FigureSpec(
        "tau_vs_n",
        "Grokking epoch against network size",
        "Points: each run's posterior median tau. Error bars: per-size mean and 94% HDI of tau over the "
        "draws of that size's transitioning runs.",
        figure_tau_vs_n,
        vector=True,
    ),
    FigureSpec(
        "gini",
        "Gini coefficient of |theta| around grokking",
        "Each run's curve is aligned on its posterior median tau.",
        figure_gini,
        vector=True,
    ),
    FigureSpec(
        "d_of_t",
        "D(t) on grokking-aligned time",
        "Posterior mean and 94% HDI of D per bin of epoch - tau, with the time at which D(t) first crosses 1.",
        figure_d_of_t,
        vector=True,
    ),
    FigureSpec(
        "ccdf",
        "Avalanche-size distributions",
        "P(S > s) of real snapshots per network size, split at each run's posterior median tau.",
        figure_ccdf,
    ),
    FigureSpec(
        "collapse",
        "Finite-size collapse",
        "The same distributions against s / N^D with the posterior mean D of each phase.",
        figure_collapse,
    ),
    FigureSpec(
        "size_scaling",
        "Largest and mean avalanche size against N",
        "Points: one per run and phase. Lines and bands: posterior mean and 94% HDI of "
        "intercept + exponent * (log N - mean log N).",
        figure_size_scaling,
    ),
    FigureSpec(
        "exponent_posteriors",
        "Posterior exponents beside the published bootstrap",
        "Posterior densities of D (solid) and D_max (dashed) per phase, with the histogram of the "
        "published least-squares slopes of log s_max on log N over bootstrap resamples.",
        figure_exponent_posteriors,
    ),
    FigureSpec(
        "leave_one_scale_out",
        "Leave-one-scale-out D",
        "D refitted without one network size at a time.",
        figure_leave_one_scale_out,
        vector=True,
    ),
    FigureSpec(
        "topology",
        "D of the synthetic control per topology",
        "Posterior mean and 94% HDI of D on each graph family.",
        figure_topology,
        vector=True,
    ),
    FigureSpec(
        "exponent_hdi",
        "Posterior of each exponent with its 94% HDI",
        "ArviZ posterior plots; the reference value is 1.",
        figure_exponent_hdi,
        section="arviz",
    ),
    FigureSpec(
        "forest",
        "Forest plot of the exponents",
        "Posterior means and 94% HDIs of the exponents of each scaling fit, chains combined.",
        figure_forest,
        section="arviz",
    ),
]


def figure_specs(data: ReportData) -> list[FigureSpec]:
    """List the fixed figures, then trace, energy, posterior predictive and Pareto-k plots per model present."""
    specs = list(FIGURES)
    for name in MODELS:
        if name not in data.idata:
            continue
        specs += [
            FigureSpec(
                f"{name}_trace",
                f"{name}: trace",
                "Trace and density per chain of the main parameters.",
                make_trace(name),
                section=name,
            ),
            FigureSpec(
                f"{name}_energy",
                f"{name}: energy",
                "Marginal energy against energy transitions; similar widths mean a good E-BFMI.",
                make_energy(name),
                section=name,
            ),
            FigureSpec(
                f"{name}_ppc",
                f"{name}: posterior predictive check",
                "Observed values against 50 posterior predictive draws.",
                make_ppc(name),
                section=name,
            ),
            FigureSpec(
                f"{name}_pareto_k",
                f"{name}: PSIS-LOO Pareto k",
                "k above 0.7 marks observations whose leave-one-out estimate is unreliable.",
                make_pareto_k(name),
                section=name,
            ),
        ]
    return specs


def _encode(fig, path_stem: Path, vector: bool) -> tuple[str, int]:
    """Save ``fig`` as PNG (and SVG when ``vector``); return the data URI to embed and its CSS width.

    The files keep print resolution; the page embeds the SVG, or a PNG at INLINE_DPI. The
    width (in CSS pixels, 96 per inch) is the figure's own, so every figure on the page
    shows at the same scale whatever its format.
    """
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI, bbox_inches="tight")
    path_stem.with_suffix(".png").write_bytes(png.getvalue())
    width = round(int.from_bytes(png.getvalue()[16:20], "big") / DPI * CSS_DPI)
    if vector:
        svg = io.BytesIO()
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
        path_stem.with_suffix(".svg").write_bytes(svg.getvalue())
        return "data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode("ascii"), width
    inline = io.BytesIO()
    fig.savefig(inline, format="png", dpi=INLINE_DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(inline.getvalue()).decode("ascii"), width


def render_figures(data: ReportData, figures_dir: Path) -> list[dict]:
    figures_dir.mkdir(parents=True, exist_ok=True)
    rendered = []
    with plt.rc_context(STYLE):
        for spec in figure_specs(data):
            entry = {
                "name": spec.name,
                "title": spec.title,
                "caption": spec.caption,
                "section": spec.section,
                "uri": None,
                "width": None,
                "note": None,
            }
            started = time.perf_counter()
            try:
                fig = spec.draw(data)
                try:
                    entry["uri"], entry["width"] = _encode(fig, figures_dir / spec.name, spec.vector)
                finally:
                    plt.close(fig)
            except FigureUnavailable as reason:
                entry["note"] = f"Not shown: {reason}."
                log.info("figure %s left out: %s", spec.name, reason)
            except Exception as error:
                entry["note"] = f"This figure failed: {type(error).__name__}: {error}"
                log.exception("figure %s failed", spec.name)
            finally:
                plt.close("all")
            log.debug("figure %s: %.1f s", spec.name, time.perf_counter() - started)
            rendered.append(entry)
    return rendered


# -- tables ----------------------------------------------------------------------------


def write_tables(data: ReportData, tables_dir: Path) -> dict[str, str]:
    """Write az.summary of each model's posterior; return the models whose table failed, with the error."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    failures = {}
    for name, idata in data.idata.items():
        names = [v for v in idata.posterior.data_vars if not v.endswith("__")]
        try:
            table = az.summary(idata, var_names=names, hdi_prob=HDI_PROB)
            table.to_csv(tables_dir / f"{name}_summary.csv")
        except Exception as error:
            log.exception("table of %s failed", name)
            failures[name] = f"{type(error).__name__}: {error}"
    return failures


# -- verdict ---------------------------------------------------------------------------


def _inside(value: float, entry: dict | None) -> bool | None:
    if not entry or entry.get("mean") is None:
        return None
    return entry["hdi_low"] <= value <= entry["hdi_high"]


def published_rows(data: ReportData) -> list[dict]:
    """Published value, D_max and typical-size D for each published exponent, with inside-HDI flags."""
    summary = data.summary
    published = summary.get("published") or {}
    d = summary.get("D") or {}
    d_max = summary.get("D_max") or {}
    rows = []
    for phase in PHASES:
        key = f"D_{phase}"
        if key not in published:
            continue
        value, uncertainty = published[key]
        rows.append(
            {
                "label": f"D, {PHASE_LABELS[phase]}",
                "published": value,
                "uncertainty": uncertainty,
                "d_max": d_max.get(phase),
                "d_max_inside": _inside(value, d_max.get(phase)),
                "d": d.get(phase),
                "d_inside": _inside(value, d.get(phase)),
            }
        )
    if "D_pooled" in published:
        value, uncertainty = published["D_pooled"]
        pooled = None
        if "fss_single_D" in data.idata:
            # The single-D fit shares one exponent between pre and post; its "pre" entry is that exponent.
            from analysis.results import posterior_summary

            pooled = posterior_summary(data.idata["fss_single_D"].posterior["D"].sel(phase="pre").values)
        rows.append(
            {
                "label": "D, pooled before and after",
                "published": value,
                "uncertainty": uncertainty,
                "d_max": None,
                "d_max_inside": None,
                "d": pooled,
                "d_inside": _inside(value, pooled),
            }
        )
    return rows


def gamma_rows(data: ReportData) -> list[dict]:
    published = (data.summary.get("published") or {}).get("gamma")
    gamma = data.summary.get("gamma") or {}
    if not published:
        return []
    value, uncertainty = published
    return [
        {
            "label": PHASE_LABELS.get(p, p),
            "published": value,
            "uncertainty": uncertainty,
            "gamma": gamma[p],
            "inside": _inside(value, gamma[p]),
        }
        for p in _phases_in(gamma)
    ]


# -- page ------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("arviz", "matplotlib", "seaborn", "jinja2"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def format_number(value, digits: int = 3) -> str:
    """Format a number with ``digits`` decimals, or "n/a" where summary.json has null."""
    if value is None or isinstance(value, jinja2.Undefined):
        return "n/a"
    return f"{float(value):.{digits}f}"


def build_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,  # summaries of external files lack many keys
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = format_number
    return environment


def render_report(report_dir: Path) -> Path:
    """Render ``report_dir`` (written by fit_phases) to ``report_dir/summary.html`` and return that path."""
    report_dir = Path(report_dir)
    started = time.perf_counter()
    data = load_report_data(report_dir)
    table_failures = write_tables(data, report_dir / "tables")
    figures = render_figures(data, report_dir / "figures")

    summary = data.summary
    input_info = summary.get("input") or {}
    context = {
        "summary": summary,
        "folder": str(report_dir),
        "d": summary.get("D") or {},
        "d_max": summary.get("D_max") or {},
        "phases": [p for p in (*PHASES, "all") if (summary.get("D") or {}).get(p)],
        "phase_labels": PHASE_LABELS,
        "phase_colours": PHASE_COLOURS,
        "comparisons": summary.get("comparisons") or {},
        "crossing": summary.get("crossing") or {},
        "changepoints": summary.get("changepoints") or {},
        "failed_fits": summary.get("failed_fits") or [],
        "all_checks_passed": summary.get("all_checks_passed", True),
        "published_rows": published_rows(data),
        "gamma_rows": gamma_rows(data),
        "diagnostics": summary.get("diagnostics") or {},
        "thresholds": summary.get("thresholds") or {},
        "figures": [f for f in figures if f["section"] == "results"],
        "model_figures": [f for f in figures if f["section"] != "results"],
        "load_errors": data.load_errors,
        "table_failures": table_failures,
        "tables": sorted(p.name for p in (report_dir / "tables").glob("*_summary.csv")),
        "input_info": input_info,
        "input_note": data.input_note,
        "input_sha256_now": data.input_sha256_now,
        "config_toml": summary.get("data_gen_config") or "",
        "sampler": summary.get("sampler") or {},
        "options": summary.get("options") or {},
        "package_versions": {
            **(summary.get("package_versions") or {}),
            **{f"{k} (report)": v for k, v in _versions().items()},
        },
        "command": summary.get("command") or "",
        "wall_seconds": summary.get("wall_seconds") or {},
        "render_command": "python -m analysis.report " + str(report_dir),
        "calibration": calibration_context(report_dir),
    }
    html = build_environment().get_template(TEMPLATE.name).render(**context)
    path = report_dir / "summary.html"
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(path)
    log.info(
        "wrote %s (%d figures, %d left out) in %.1f s",
        path,
        sum(f["uri"] is not None for f in figures),
        sum(f["uri"] is None for f in figures),
        time.perf_counter() - started,
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Render a fit_phases report folder as summary.html with figures and tables.",
    )
    parser.add_argument("report_dir", type=Path, help="folder written by python -m analysis.fit_phases --out")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default: INFO)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        render_report(args.report_dir)
    except FileNotFoundError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
