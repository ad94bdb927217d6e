"""The whole inference of fit_phases, stage by stage, from a validated input to summary.json.

Stages: changepoints, phase split, D per phase with the changepoint uncertainty
propagated, the single-D comparison (PSIS-LOO), gamma, D_max, leave-one-scale-out
refits, the published bootstrap, D(t), topology invariance and the Gini lag. Each
stage logs its start and end, and each fit's convergence checks go to the summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import arviz as az
import numpy as np

from analysis.bootstrap import RESAMPLES, bootstrap_slope
from analysis.inputs import AnalysisInput
from analysis.phases import (
    NO_TRANSITION,
    PhaseSplit,
    max_size_groups,
    mean_size_groups,
    split_phases,
    typical_size_groups,
)
from analysis.results import posterior_summary, save_idata
from models.diagnostics import diagnose
from models.fss import GroupData, build_model, centred_phases, model_data, pointwise_log_likelihood
from models.sampling import Sampler, SamplerSettings, complete

log = logging.getLogger(__name__)

LOSO_TARGET_ACCEPT = 0.995
# Refits on other tau draws and without one scale summarise D only, so they run shorter
# chains than the main fits. With 500 kept draws, one paper-preset refit had R-hat 1.010.
REFIT_DRAWS = 1000
REFIT_TUNE = 500
ROPE = (0.95, 1.05)  # region of practical equivalence around D = 1 for the synthetic control
PUBLISHED = {
    "D_pre": [0.90, 0.02],
    "D_post": [1.20, 0.02],
    "D_synthetic": [0.99, 0.01],
    "D_pooled": [1.00, 0.02],
    "gamma": [1.15, 0.06],
}


@dataclass(frozen=True)
class FitOptions:
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    tau_draws: int = 4  # changepoint posterior draws over which the phase split is redone
    window: int = 10  # snapshots per side of tau in the D_max windows
    bin_width: int = 10  # epochs per bin of grokking-aligned time for D(t)
    gini_window: int = 60  # epochs either side of tau searched for the Gini peak
    bootstrap_resamples: int = RESAMPLES
    leave_one_scale_out: bool = True


class Stages:
    """Run the stages in order, collecting InferenceData files, summary entries and timings."""

    def __init__(self, data: AnalysisInput, options: FitOptions, out: Path, provenance: dict):
        self.data = data
        self.options = options
        self.out = out
        self.provenance = provenance
        self.summary: dict = {"diagnostics": {}, "wall_seconds": {}}
        self.tau_plugin: np.ndarray | None = None
        self.changepoints = None
        self._centred: np.ndarray | None = None  # phases sampled centred in the plug-in D fit

    # -- bookkeeping ---------------------------------------------------------------------
    def _save(self, name: str, idata: az.InferenceData, config: dict) -> None:
        attrs = {**self.provenance, "model": name, "model_config": config}
        save_idata(idata, self.out / f"{name}.nc", attrs)

    def _check(self, name: str, idata: az.InferenceData, var_names: list[str] | None = None) -> dict:
        result = diagnose(idata, var_names)
        self.summary["diagnostics"][name] = result
        if result["passed"]:
            log.info("%s: convergence checks passed", name)
        else:
            log.warning("%s: convergence checks FAILED: %s", name, "; ".join(result["failed"]))
        return result

    def _timed(self, name: str, function, *args):
        log.info("stage %s: start", name)
        started = time.perf_counter()
        result = function(*args)
        seconds = time.perf_counter() - started
        self.summary["wall_seconds"][name] = round(seconds, 2)
        log.info("stage %s: done in %.1f s", name, seconds)
        return result

    def run(self) -> dict:
        if self.data.has_training:
            self._timed("changepoints", self.fit_changepoints)
        split = split_phases(self.data, self.tau_plugin)
        self.summary["phases"] = list(split.phases)
        self._timed("scaling", self.fit_scaling, split)
        if self.data.has_training:
            self._timed("dynamics", self.fit_dynamics)
            self._timed("topology", self.fit_topology)
            self._timed("gini_lag", self.fit_gini_lag)
        return self.summary

    # -- changepoints --------------------------------------------------------------------
    def fit_changepoints(self) -> None:
        from models.changepoint import ChangepointConfig, fit_changepoints, run_outcomes

        data = self.data
        counts = np.rint(data.train_acc * data.n_patterns).astype(np.int64)
        config = ChangepointConfig(likelihood="binomial", n_trials=data.n_patterns)
        idata = fit_changepoints(counts, data.log_n, data.run_scale, config, self.options.sampler)
        outcomes = run_outcomes(idata)
        self._check("changepoint", idata, var_names=[v for v in idata.posterior.data_vars if v != "tau"])
        self._save("changepoint", idata, asdict(config))

        outcome = outcomes["outcome"].values
        tau = np.where(outcome == "not_grokked", NO_TRANSITION, 0)
        grokked = outcome == "grokked"
        tau[grokked] = np.rint(outcomes["tau_median"].values[grokked]).astype(np.int64)
        self.tau_plugin = tau
        self.changepoints = idata

        tau_draws = idata.posterior["tau"].values.reshape(-1, data.n_runs)
        per_scale = []
        for scale, n_params in enumerate(data.n_params):
            runs = data.run_scale == scale
            draws = tau_draws[:, runs]
            entry = {
                "n_params": int(n_params),
                "n_runs": int(runs.sum()),
                "n_grokked": int((outcome[runs] == "grokked").sum()),
                "n_not_grokked": int((outcome[runs] == "not_grokked").sum()),
                "n_solved_from_start": int((outcome[runs] == "solved_from_start").sum()),
                "tau": posterior_summary(draws[draws > 0]),
            }
            if data.hidden is not None:
                entry["h"] = int(data.hidden[scale])
            per_scale.append(entry)
        self.summary["changepoints"] = {
            "n_runs": int(data.n_runs),
            "n_grokked": int(grokked.sum()),
            "n_not_grokked": int((outcome == "not_grokked").sum()),
            "n_solved_from_start": int((outcome == "solved_from_start").sum()),
            "per_scale": per_scale,
        }

    # -- scaling exponents ---------------------------------------------------------------
    def _exponent_summary(self, idata: az.InferenceData, name: str, phases) -> dict:
        values = idata.posterior[name]
        return {phase: posterior_summary(values.sel(phase=phase).values) for phase in phases}

    def _fit_groups(self, name: str, groups: GroupData, exponent_name: str, **model_options):
        sampler = Sampler(build_model(groups, exponent_name=exponent_name, **model_options), self.options.sampler)
        pointwise = build_model(groups, exponent_name=exponent_name, pointwise=True, **model_options)
        idata = complete(sampler.sample(), pointwise, seed=self.options.sampler.seed)
        self._check(name, idata, var_names=_sampled(idata))
        self._save(name, idata, {"exponent": exponent_name, "phases": list(groups.phases), **model_options})
        return idata, sampler

    def fit_scaling(self, split: PhaseSplit) -> None:
        data, options = self.data, self.options
        phases = split.phases
        summary = self.summary
        summary["runs_without_transition"] = split.n_runs_without_transition
        summary["refit_sampler"] = self._refit_length()
        empty = dict.fromkeys(("pre", "post", "synthetic"))

        # 1. Headline D on the plug-in split, then the split redone over tau draws.
        groups = typical_size_groups(data, split)
        plugin, sampler = self._fit_groups("fss_D_plugin", groups, "D")
        self._centred = centred_phases(groups)
        present = [p for p in phases if (groups.phase == phases.index(p)).any()]
        headline = plugin
        summary["propagation"] = {"tau_draws": 0}
        if self.changepoints is not None and options.tau_draws > 0:
            headline = self._propagate(sampler, split, present)
        summary["D"] = {**empty, **self._exponent_summary(headline, "D", present)}
        summary["propagation"]["D_plugin"] = self._exponent_summary(plugin, "D", present)
        summary["propagation"]["shift"] = {
            p: summary["D"][p]["mean"] - summary["propagation"]["D_plugin"][p]["mean"] for p in present
        }

        # 2. One D before and after grokking, compared by PSIS-LOO over (run, phase) groups.
        if {"pre", "post"} <= set(present):
            single, _ = self._fit_groups("fss_single_D", groups, "D", shared_exponent={"post": "pre"})
            summary["loo"] = loo_comparison(plugin, single, groups)

        # 3. gamma and D_max.
        gamma, _ = self._fit_groups("fss_gamma", mean_size_groups(data, split), "gamma")
        summary["gamma"] = {**empty, **self._exponent_summary(gamma, "gamma", present)}
        max_groups, _ = max_size_groups(data, split, self.tau_plugin, options.window)
        d_max, _ = self._fit_groups("fss_D_max", max_groups, "D_max")
        summary["D_max"] = {**empty, **self._exponent_summary(d_max, "D_max", present)}
        summary["D_max_window"] = options.window

        # 4. The published estimator on the same windows.
        summary["bootstrap"] = {}
        for p, phase in enumerate(phases):
            rows = max_groups.phase == p
            if len(np.unique(max_groups.scale[rows])) < 2:
                continue
            result = bootstrap_slope(
                max_groups.log_n[max_groups.scale[rows]],
                max_groups.mean[rows],
                max_groups.scale[rows],
                resamples=options.bootstrap_resamples,
                seed=options.sampler.seed,
            )
            summary["bootstrap"][phase] = {k: v for k, v in result.items() if k != "slopes"}
            np.save(self.out / f"bootstrap_{phase}.npy", result["slopes"])

        # 5. Posterior comparisons on the headline D.
        summary["comparisons"] = comparisons(headline, present)

        # 6. Leave one scale out.
        if options.leave_one_scale_out:
            summary["leave_one_scale_out"] = self._leave_one_scale_out(sampler, groups, present)

    def _propagate(self, sampler: Sampler, split: PhaseSplit, present: list[str]) -> az.InferenceData:
        """Refit D on splits at ``tau_draws`` posterior draws of tau and pool the draws."""
        options = self.options
        tau = self.changepoints.posterior["tau"].values.reshape(-1, self.data.n_runs)
        rng = np.random.default_rng(options.sampler.seed)
        picks = rng.choice(len(tau), size=options.tau_draws, replace=False)
        fits = []
        for k, draw in enumerate(picks):
            groups = typical_size_groups(self.data, split_phases(self.data, tau[draw]))
            idata = sampler.sample(
                data=model_data(groups, self._centred), seed=options.sampler.seed + k + 1, **self._refit_length()
            )
            self._check(f"fss_D_tau_draw_{k}", idata, var_names=_sampled(idata))
            fits.append(idata)
        pooled = az.concat(fits, dim="chain")
        self.summary["propagation"]["tau_draws"] = int(options.tau_draws)
        self._save("fss_D", pooled, {"tau_draw_indices": picks.tolist(), "phases": present})
        return pooled

    def _refit_length(self) -> dict[str, int]:
        settings = self.options.sampler
        return {"draws": min(settings.draws, REFIT_DRAWS), "tune": min(settings.tune, REFIT_TUNE)}

    def _leave_one_scale_out(self, sampler: Sampler, groups: GroupData, present: list[str]) -> list[dict]:
        entries = []
        for scale, n_params in enumerate(self.data.n_params):
            kept = groups.scale != scale
            remaining = groups.subset(kept)
            if any(len(np.unique(remaining.scale[remaining.phase == groups.phases.index(p)])) < 2 for p in present):
                continue
            # A smaller step than the main fits: on the default preset these refits had single
            # divergent transitions at 0.95 and 0.99.
            idata = sampler.sample(
                data=model_data(remaining, centred_phases(groups)),
                target_accept=LOSO_TARGET_ACCEPT,
                **self._refit_length(),
            )
            check = self._check(f"fss_D_without_N{n_params}", idata, var_names=_sampled(idata))
            entries.append(
                {
                    "left_out_n_params": int(n_params),
                    "D": self._exponent_summary(idata, "D", present),
                    "diagnostics": check,
                }
            )
        return entries

    # -- time-resolved D, topology, Gini lag --------------------------------------------
    def fit_dynamics(self) -> None:
        from models.dynamics import crossing_time, fit_dynamics

        cells = aligned_cells(self.data, self.tau_plugin, self.options.bin_width)
        if cells is None:
            log.warning("D(t): fewer than two bins of aligned time have data at two scales; skipped")
            self.summary["crossing"] = posterior_summary([])
            return
        mean, se, centres = cells
        idata = fit_dynamics(mean, se, self.data.log_n, centres, self.options.sampler)
        self._check("dynamics", idata, var_names=_sampled(idata))
        self._save("dynamics", idata, {"bin_width": self.options.bin_width})
        # The published D(t) crosses 1 upwards at grokking; report the direction the data favour.
        by_direction = {}
        for direction in ("up", "down"):
            crossing = crossing_time(idata, centres, direction=direction).values
            by_direction[direction] = {
                **posterior_summary(crossing),
                "p_no_crossing": float(np.isnan(crossing).mean()),
            }
        favoured = min(by_direction, key=lambda d: by_direction[d]["p_no_crossing"])
        self.summary["crossing"] = {**by_direction[favoured], "direction": favoured}
        self.summary["crossing_by_direction"] = by_direction
        self.summary["D_t"] = {
            "bin_centres": centres.tolist(),
            "D": [posterior_summary(idata.posterior["D"].isel(bin=b).values) for b in range(len(centres))],
        }

    def fit_topology(self) -> None:
        from models.topology import band_probabilities, fit_topology

        snaps = self.data.snapshots
        synthetic = snaps.source == 1
        codes = np.unique(snaps.topology[synthetic])
        if len(codes) < 2:
            log.info("topology: synthetic snapshots on %d topology; skipped", len(codes))
            return
        names = [self.data.topology_names[c] for c in codes]
        mean, se = cell_means(
            snaps.log_size[synthetic],
            np.searchsorted(codes, snaps.topology[synthetic]),
            snaps.scale[synthetic],
            len(codes),
            len(self.data.n_params),
        )
        idata = fit_topology(mean, se, self.data.log_n, names, self.options.sampler)
        self._check("topology", idata, var_names=_sampled(idata))
        self._save("topology", idata, {"band": list(ROPE)})
        probabilities = band_probabilities(idata, band=ROPE)
        self.summary["topology"] = {
            "band": list(ROPE),
            "D0": posterior_summary(idata.posterior["D0"].values),
            "D": {name: posterior_summary(idata.posterior["D"].sel(topology=name).values) for name in names},
            "p_in_band": {
                **{name: float(probabilities["D"].sel(topology=name)) for name in names},
                "D0": float(probabilities["D0"]),
            },
        }

    def fit_gini_lag(self) -> None:
        from models.gini_lag import fit_gini_lag, gini_peak_lag

        tau = np.where(self.tau_plugin > 0, self.tau_plugin, np.nan).astype(float)
        lag = gini_peak_lag(self.data.gini, tau, self.options.gini_window)
        keep = np.isfinite(lag)
        if keep.sum() < 3:
            log.warning("Gini lag: only %d runs have a lag; skipped", int(keep.sum()))
            return
        idata = fit_gini_lag(lag[keep], self.data.run_scale[keep], len(self.data.n_params), self.options.sampler)
        self._check("gini_lag", idata, var_names=_sampled(idata))
        self._save("gini_lag", idata, {"window": self.options.gini_window})
        # A maximum on the window's edge means the Gini peak may lie outside the window.
        at_edge = int((np.abs(lag[keep]) >= self.options.gini_window).sum())
        if at_edge:
            log.warning(
                "Gini lag: %d of %d runs peak on the edge of the +-%d-epoch window, so their true peak may "
                "lie outside it; widen the window with --gini-window",
                at_edge,
                int(keep.sum()),
                self.options.gini_window,
            )
        self.summary["gini_lag"] = {
            **posterior_summary(idata.posterior["mu"].values),
            "n_runs": int(keep.sum()),
            "window": self.options.gini_window,
            "n_at_window_edge": at_edge,
        }


def _sampled(idata: az.InferenceData) -> list[str]:
    """Posterior variables that the sampler drew (not deterministic transforms of them)."""
    skip = {"scale_effect", "D", "gamma", "D_max"}
    return [name for name in idata.posterior.data_vars if name not in skip]


def comparisons(idata: az.InferenceData, present: list[str]) -> dict:
    """Posterior probabilities and the ROPE check of the headline exponents."""
    d = idata.posterior["D"]
    result: dict[str, object] = {"p_post_gt_pre": None, "p_pre_lt_1": None, "p_post_gt_1": None}
    if "pre" in present:
        result["p_pre_lt_1"] = float((d.sel(phase="pre") < 1).mean())
    if "post" in present:
        result["p_post_gt_1"] = float((d.sel(phase="post") > 1).mean())
    if {"pre", "post"} <= set(present):
        difference = d.sel(phase="post") - d.sel(phase="pre")
        result["p_post_gt_pre"] = float((difference > 0).mean())
        result["D_post_minus_pre"] = posterior_summary(difference.values)
    low, high = ROPE
    rope = {"low": low, "high": high, "p_inside": None}
    if "synthetic" in present:
        synthetic = d.sel(phase="synthetic")
        rope["p_inside"] = float(((synthetic > low) & (synthetic < high)).mean())
    result["synthetic_rope"] = rope
    return result


def loo_comparison(phase_specific: az.InferenceData, single: az.InferenceData, groups: GroupData) -> dict:
    """PSIS-LOO over (run, phase) groups of the phase-specific model against one shared D."""
    results = {}
    for name, idata in (("phase_specific", phase_specific), ("single_D", single)):
        log_lik = pointwise_log_likelihood(idata, groups)
        draws = idata.log_likelihood["draw"]  # a subset of the posterior's draws for large data
        grouped = az.from_dict(posterior={"D": idata.posterior["D"].sel(draw=draws).values}, log_likelihood={"group": log_lik})
        results[name] = grouped
    compared = az.compare(results, ic="loo")
    details = {}
    for name, grouped in results.items():
        loo = az.loo(grouped, pointwise=True)
        k = loo.pareto_k.values
        details[name] = {
            "elpd_loo": float(loo.elpd_loo),
            "se": float(loo.se),
            "p_loo": float(loo.p_loo),
            "pareto_k": {
                "good (k <= 0.7)": int((k <= 0.7).sum()),
                "bad (0.7 < k <= 1)": int(((k > 0.7) & (k <= 1)).sum()),
                "very bad (k > 1)": int((k > 1).sum()),
            },
        }
    best = compared.index[0]
    other = compared.index[1]
    return {
        **details,
        "preferred": str(best),
        "elpd_diff": float(compared.loc[other, "elpd_diff"]),
        "se_diff": float(compared.loc[other, "dse"]),
    }


SE_FLOOR = 1e-3  # smallest standard error of a cell mean (log size); equal sizes would give 0


def cell_means(values, row, scale, n_rows: int, n_scales: int, min_count: int = 3):
    """Mean and standard error of ``values`` per (row, scale) cell; NaN where a cell is too small."""
    cell = row * n_scales + scale
    size = n_rows * n_scales
    count = np.bincount(cell, minlength=size)
    total = np.bincount(cell, weights=values, minlength=size)
    squares = np.bincount(cell, weights=values * values, minlength=size)
    enough = count >= min_count
    mean = np.full(size, np.nan)
    se = np.full(size, np.nan)
    mean[enough] = total[enough] / count[enough]
    variance = (
        np.maximum(squares[enough] / count[enough] - mean[enough] ** 2, 0.0) * count[enough] / (count[enough] - 1)
    )
    se[enough] = np.maximum(np.sqrt(variance / count[enough]), SE_FLOOR)
    return mean.reshape(n_rows, n_scales), se.reshape(n_rows, n_scales)


def aligned_cells(data: AnalysisInput, tau: np.ndarray, bin_width: int):
    """Cells (bin, scale) of log size on grokking-aligned time; bins need data at two scales or more."""
    snaps = data.snapshots
    run_tau = tau[snaps.run]
    keep = (snaps.source == 0) & (run_tau > 0)
    aligned = snaps.epoch[keep] - run_tau[keep]
    if len(aligned) == 0:
        return None
    bin_index = np.floor_divide(aligned, bin_width)
    first = bin_index.min()
    bin_index -= first
    n_bins = int(bin_index.max()) + 1
    mean, se = cell_means(snaps.log_size[keep], bin_index, snaps.scale[keep], n_bins, len(data.n_params))
    # Keep the contiguous run of bins between the first and last with data at two scales.
    usable = np.flatnonzero(np.isfinite(mean).sum(axis=1) >= 2)
    if len(usable) < 2:
        return None
    span = slice(usable[0], usable[-1] + 1)
    centres = (np.arange(n_bins) + first + 0.5) * bin_width
    return mean[span], se[span], centres[span]
