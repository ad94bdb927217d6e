"""Split snapshots into phases and reduce them to the groups the scaling models fit.

Real snapshots of run r are ``pre`` before its grokking epoch tau_r and ``post`` from
tau_r on; runs without a transition have no phase and are left out (and counted).
Synthetic snapshots on the probe's own topology form the ``synthetic`` phase, so all
three phases share one graph family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.inputs import AnalysisInput
from models.fss import PHASES, GroupData, group_statistics

NO_TRANSITION = -1


@dataclass
class PhaseSplit:
    """Phase index of each snapshot (-1: left out) and the phase names."""

    phase: np.ndarray
    phases: tuple[str, ...]
    n_runs_without_transition: int


def split_phases(data: AnalysisInput, tau: np.ndarray | None) -> PhaseSplit:
    """Label snapshots by phase: explicit labels, or the changepoint ``tau`` of each run."""
    snaps = data.snapshots
    if data.kind == "external":
        if (snaps.phase < 0).all():
            return PhaseSplit(np.zeros(len(snaps.phase), dtype=np.int64), ("all",), 0)
        return PhaseSplit(snaps.phase.copy(), PHASES, 0)

    phase = np.full(len(snaps.run), -1, dtype=np.int64)
    real = snaps.source == 0
    run_tau = tau[snaps.run]
    transitioned = run_tau != NO_TRANSITION
    phase[real & transitioned & (snaps.epoch < run_tau)] = PHASES.index("pre")
    phase[real & transitioned & (snaps.epoch >= run_tau)] = PHASES.index("post")
    phase[(snaps.source == 1) & (snaps.topology == data.real_topology)] = PHASES.index("synthetic")
    return PhaseSplit(phase, PHASES, int((tau == NO_TRANSITION).sum()))


def _groups_from(values: np.ndarray, data: AnalysisInput, split: PhaseSplit, keep: np.ndarray, per_group: str):
    n_phases = len(split.phases)
    group = data.snapshots.run[keep] * n_phases + split.phase[keep]
    n_groups = data.n_runs * n_phases
    if per_group == "stats":
        count, mean, sum_sq = group_statistics(values[keep], group, n_groups)
    else:
        count = np.bincount(group, minlength=n_groups)
        mean = np.full(n_groups, np.nan)
        if per_group == "log_mean":
            total = np.bincount(group, weights=np.exp(values[keep]), minlength=n_groups)
            mean[count > 0] = np.log(total[count > 0] / count[count > 0])
        else:  # log_max
            np.fmax.at(mean, group, values[keep])
        sum_sq = np.zeros(n_groups)
    present = count > 0
    groups = GroupData(
        mean=mean[present],
        count=count[present] if per_group == "stats" else np.ones(int(present.sum()), dtype=np.int64),
        sum_sq=sum_sq[present],
        scale=np.repeat(data.run_scale, n_phases)[present],
        phase=np.tile(np.arange(n_phases), data.n_runs)[present],
        log_n=data.log_n,
        phases=split.phases,
    )
    run_of_group = np.repeat(np.arange(data.n_runs), n_phases)[present]
    return groups, run_of_group


def typical_size_groups(data: AnalysisInput, split: PhaseSplit) -> GroupData:
    """Groups of log sizes for the headline D: every snapshot, through sufficient statistics."""
    keep = split.phase >= 0
    return _groups_from(data.snapshots.log_size, data, split, keep, "stats")[0]


def mean_size_groups(data: AnalysisInput, split: PhaseSplit) -> GroupData:
    """Reduce snapshots to one log mean size per (run, phase), the response of gamma."""
    keep = split.phase >= 0
    return _groups_from(data.snapshots.log_size, data, split, keep, "log_mean")[0]


def window_mask(data: AnalysisInput, split: PhaseSplit, tau: np.ndarray | None, width: int) -> np.ndarray:
    """Snapshots in equal windows: the last ``width`` before tau, the first ``width`` from tau on.

    Synthetic and externally labelled phases take their first ``width`` snapshots per run.
    A (run, phase) with fewer than ``width`` snapshots is left out, so every window has
    the same length and s_max is comparable across runs.
    """
    snaps = data.snapshots
    keep = np.zeros(len(snaps.run), dtype=bool)
    labelled = np.flatnonzero(split.phase >= 0)
    group = snaps.run[labelled] * len(split.phases) + split.phase[labelled]

    # Rank each snapshot within its group in epoch order (file order where epochs are unknown).
    order = np.lexsort((snaps.epoch[labelled], group))
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    lengths = np.diff(np.r_[starts, len(sorted_group)])
    rank = np.arange(len(order)) - np.repeat(starts, lengths)
    length = np.repeat(lengths, lengths)

    before_tau = (split.phase[labelled[order]] == split.phases.index("pre")) if tau is not None else False
    take = np.where(before_tau, rank >= length - width, rank < width) & (length >= width)
    keep[labelled[order[take]]] = True
    return keep


def max_size_groups(data: AnalysisInput, split: PhaseSplit, tau: np.ndarray | None, width: int):
    """Reduce snapshots to one log s_max per (run, phase) over equal windows (the D_max response).

    Also returns the run of each group.
    """
    keep = window_mask(data, split, tau, width) & (split.phase >= 0)
    return _groups_from(data.snapshots.log_size, data, split, keep, "log_max")
