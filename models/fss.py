"""Phase-specific finite-size scaling: exponents of avalanche size against network size.

The model regresses a response of each (run, phase) group on the centred log network
size, with one intercept and one exponent per phase. It serves three estimators:

- D, the headline: the response is every snapshot's log size, entered through the
  group's sufficient statistics (count, mean, sum of squared deviations);
- gamma: one value per group, the log of the group's mean size;
- D_max: one value per group, the log of the largest size in an equal-length window.

Collapsing snapshots to sufficient statistics is exact for Gaussian scatter within a
run and makes the cost independent of the number of snapshots: the default preset's
38,400 snapshots (real and synthetic on one graph) become 384 groups, and the
paper preset's 2.4 million become 24,000.
Robustness sits at the run level instead: group means follow a Student-t law, so one
odd run cannot drag an exponent. Run effects are integrated out analytically (they
are Gaussian), so the sampler never trades D against hundreds of run intercepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

PHASES = ("pre", "post", "synthetic")


@dataclass
class GroupData:
    """One row per (run, phase) group; arrays of length n_groups are aligned on the group."""

    mean: np.ndarray  # response mean over the group's snapshots, or the run-level response
    count: np.ndarray  # snapshots in the group; 1 for run-level responses
    sum_sq: np.ndarray  # sum of squared deviations from the mean; 0 where count is 1
    scale: np.ndarray  # scale index into log_n
    phase: np.ndarray  # phase index into phases
    log_n: np.ndarray  # (n_scales,) log N of each scale
    phases: tuple[str, ...] = PHASES

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=float)
        n_groups = len(self.mean)
        for name in ("count", "sum_sq", "scale", "phase"):
            values = np.asarray(getattr(self, name))
            if values.shape != (n_groups,):
                raise ValueError(f"{name} has shape {values.shape}, expected ({n_groups},): one value per group.")
            setattr(self, name, values)
        if not np.isfinite(self.mean).all():
            raise ValueError("mean has NaN or infinite values; drop empty groups and snapshots of size 0 first.")
        if (self.count < 1).any():
            raise ValueError("count has groups with no snapshots; drop them before fitting.")
        if self.scale.min() < 0 or self.scale.max() >= len(self.log_n):
            raise ValueError(
                f"scale indices span {self.scale.min()}..{self.scale.max()} but log_n has {len(self.log_n)} entries."
            )
        if self.phase.min() < 0 or self.phase.max() >= len(self.phases):
            raise ValueError(f"phase indices span {self.phase.min()}..{self.phase.max()} for phases {self.phases}.")
        for p, name in enumerate(self.phases):
            scales = np.unique(self.scale[self.phase == p])
            if 0 < len(scales) < 2:
                raise ValueError(
                    f"Phase {name!r} has data at only one network size (scale {scales[0]}); an exponent needs "
                    "at least two sizes. Add scales or drop the phase."
                )

    @property
    def has_within(self) -> bool:
        """Whether groups hold several snapshots, so within-run scatter is observed."""
        return bool((self.count > 1).any())

    def subset(self, keep: np.ndarray) -> GroupData:
        return GroupData(
            self.mean[keep],
            self.count[keep],
            self.sum_sq[keep],
            self.scale[keep],
            self.phase[keep],
            self.log_n,
            self.phases,
        )


def group_statistics(values: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """Count, mean and sum of squared deviations of ``values`` per group index (0..n_groups-1)."""
    count = np.bincount(group, minlength=n_groups)
    total = np.bincount(group, weights=values, minlength=n_groups)
    mean = np.divide(total, count, out=np.full(n_groups, np.nan), where=count > 0)
    deviation = values - mean[group]
    sum_sq = np.bincount(group, weights=deviation * deviation, minlength=n_groups)
    return count, mean, sum_sq


def residual_basis(log_n: np.ndarray, scale: np.ndarray, phase: np.ndarray, n_phases: int) -> np.ndarray:
    """Orthonormal basis (phase, scale, n_scales - 2) of the scale effects that [1, x] cannot absorb.

    The columns of phase p span the vectors over the scales with data in phase p that
    are orthogonal to the intercept and to x = log N - mean(log N). Scale effects in
    this span cannot mimic a change of intercept or exponent. Rows of scales without
    data, and columns beyond the span, are zero.
    """
    x = log_n - log_n.mean()
    n_scales = len(log_n)
    basis = np.zeros((n_phases, n_scales, max(n_scales - 2, 0)))
    for p in range(n_phases):
        present = np.zeros(n_scales, dtype=bool)
        present[scale[phase == p]] = True
        n_present = int(present.sum())
        if n_present < 3:
            continue
        design = np.column_stack([np.ones(n_present), x[present]])
        q, _ = np.linalg.qr(design, mode="complete")
        basis[p, present, : n_present - 2] = q[:, 2:]
    return basis


OMEGA_RATE = 40.0  # omega ~ Gamma(2, OMEGA_RATE): mode 1 / OMEGA_RATE = 0.025 in log size
# Phases whose per-scale means have a standard error below this (log size) get centred
# scale effects. Set from the default preset: synthetic phases (about 0.002) sample well
# centred, pre and post (0.01 to 0.02) diverged centred and sample well non-centred.
CENTRED_BELOW = 0.01


def scale_mean_precision(groups: GroupData) -> np.ndarray:
    """Typical standard error of a per-scale mean response, per phase (inf without data)."""
    se = np.full(len(groups.phases), np.inf)
    for p in range(len(groups.phases)):
        errors = []
        for scale in np.unique(groups.scale[groups.phase == p]):
            cell = (groups.phase == p) & (groups.scale == scale)
            if cell.sum() > 1:
                errors.append(groups.mean[cell].std(ddof=1) / np.sqrt(cell.sum()))
            elif groups.count[cell][0] > 1:
                count = groups.count[cell][0]
                errors.append(np.sqrt(groups.sum_sq[cell][0] / (count - 1) / count))
        if errors:
            se[p] = float(np.median(errors))
    return se


def centred_phases(groups: GroupData) -> np.ndarray:
    """Phases whose scale residuals are sampled centred: those whose data pin the scale means down."""
    return scale_mean_precision(groups) < CENTRED_BELOW


def centred_residuals(groups: GroupData, basis: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """Mark the scale residuals (phase, residual) to sample centred.

    ``phases`` (default: ``centred_phases(groups)``) marks the centred phases. Residual
    directions without data (a scale left out) are always non-centred, because only the
    prior informs them.
    """
    informed = np.abs(basis).sum(axis=1) > 0
    phases = centred_phases(groups) if phases is None else phases
    return phases[:, None] & informed


def model_data(groups: GroupData, centred: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Values of the model's pm.Data containers; pass them to ``Sampler.sample(data=...)`` to refit.

    The dict contains the containers of both forms of ``build_model``, and
    ``Sampler.sample`` passes on only those that the compiled model reads. ``centred``
    fixes which phases are sampled centred. Refits on part of the data should pass the full fit's ``centred_phases``:
    a subset near the threshold of ``CENTRED_BELOW`` can otherwise flip to the form
    that samples worse.
    """
    n_phases, n_scales = len(groups.phases), len(groups.log_n)
    within = np.flatnonzero(groups.count > 1)
    basis = residual_basis(groups.log_n, groups.scale, groups.phase, n_phases)
    cell = groups.phase[within] * n_scales + groups.scale[within]

    def per_cell(weights: np.ndarray) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=n_phases * n_scales).reshape(n_phases, n_scales)

    return {
        "group_mean": groups.mean,
        "group_count": groups.count.astype(float),
        "group_phase": groups.phase.astype(np.int64),
        "group_scale": groups.scale.astype(np.int64),
        "scale_x": groups.log_n - groups.log_n.mean(),
        "within_group": within.astype(np.int64),
        "within_sum_sq": groups.sum_sq[within].astype(float),
        "cell_half_dof": per_cell((groups.count[within] - 1.0) / 2.0),
        "cell_sum_sq": per_cell(groups.sum_sq[within].astype(float)),
        "centred": centred_residuals(groups, basis, centred),
        "residual_basis": basis,
    }


def build_model(
    groups: GroupData,
    *,
    exponent_name: str = "D",
    shared_exponent: dict[str, str] | None = None,
    pointwise: bool = False,
):
    r"""Build the scaling model for one response.

    .. math::

        \bar y_g &\sim \mathrm{StudentT}\Big(\nu,\ a_p + B_p x_g + v_{s,p},\
                   \sqrt{\tau_p^2 + \sigma_{g}^2 / n_g}\Big), \qquad p = p(g),\ s = s(g) \\
        S_g / \sigma_g^2 &\sim \chi^2_{n_g - 1} \quad (n_g \ge 2), \qquad
                   \sigma_g = \sigma_p \, e^{\kappa_p x_g} \\
        x_g &= \log N_{s(g)} - \overline{\log N} \\
        a_p &\sim \mathcal{N}(\bar y, 2), \quad B_p \sim \mathcal{N}(1, 0.5) \\
        v_{\cdot,p} &= C_p w_p, \quad w_{p,k} \sim \mathcal{N}(0, \omega_p),
                   \quad \omega_p \sim \mathrm{Gamma}(2, 40) \\
        \tau_p &\sim \mathrm{HalfNormal}(0.5), \quad \sigma_p \sim \mathrm{HalfNormal}(1), \quad
                   \kappa_p \sim \mathcal{N}(0, 0.5), \quad \nu - 1 \sim \mathrm{Gamma}(2, 0.1)

    For a snapshot-level response, group g of run r holds n_g snapshots with mean
    \bar y_g and sum of squared deviations S_g; integrating the run effect
    u_{r,p} ~ N(0, tau_p^2) out of y_{gi} ~ N(mu_g + u_{r,p}, sigma_g^2) gives the two
    lines above, except that the Student-t replaces the normal law of \bar y_g to
    guard against outlying runs. For a run-level response (every n_g = 1) only the
    first line remains, with scale sqrt(tau_p^2 + sigma_g^2) and tau_p fixed at 0.
    C_p is an orthonormal basis of the vectors over the scales of phase p that are
    orthogonal to [1, x], so the scale effects v cannot absorb a change of intercept or
    exponent; they are i.i.d. N(0, omega_p^2) within that span.

    The exponent B is named ``exponent_name`` (dim ``phase``). ``shared_exponent``
    maps a phase to the phase whose exponent it shares, e.g. ``{"post": "pre"}``.

    sigma_g takes one value per (phase, scale) cell, so the chi-square terms of a cell
    depend on the data only through the cell's sums of S_g and of (n_g - 1) / 2. By
    default the model adds them up per cell in a potential, which leaves the posterior
    unchanged and makes gradients cheaper at thousands of runs
    (``bench/bench_fss_gradient.py``). Pass
    ``pointwise=True`` for the form with one observed ``within`` term per group,
    which pointwise log-likelihoods (LOO) and predictive draws need. Both forms have
    the same free variables, so either one reads the other's posterior.
    """
    n_scales = len(groups.log_n)
    shared_exponent = shared_exponent or {}
    free = [p for p in groups.phases if p not in shared_exponent]
    exponent_index = np.array([free.index(shared_exponent.get(p, p)) for p in groups.phases])
    values = model_data(groups)

    coords = {
        "phase": list(groups.phases),
        "exponent_phase": free,
        "scale": np.arange(n_scales),
        "residual": np.arange(max(n_scales - 2, 0)),
    }
    with pm.Model(coords=coords) as model:
        group_mean = pm.Data("group_mean", values["group_mean"])
        group_count = pm.Data("group_count", values["group_count"])
        phase = pm.Data("group_phase", values["group_phase"])
        scale = pm.Data("group_scale", values["group_scale"])
        scale_x = pm.Data("scale_x", values["scale_x"], dims="scale")
        basis = pm.Data("residual_basis", values["residual_basis"])

        intercept = pm.Normal("intercept", mu=float(groups.mean.mean()), sigma=2.0, dims="phase")
        free_exponent = pm.Normal(f"{exponent_name}_free", mu=1.0, sigma=0.5, dims="exponent_phase")
        exponent = pm.Deterministic(exponent_name, free_exponent[exponent_index], dims="phase")

        # Centred where the data pin the scale means down tightly, non-centred elsewhere; each
        # form has a funnel or a narrow ridge in the other regime.
        omega = pm.Gamma("omega", alpha=2.0, beta=OMEGA_RATE, dims="phase")
        centred = pm.Data("centred", values["centred"])
        z_residual = pm.Normal(
            "z_scale_residual", mu=0.0, sigma=pt.switch(centred, omega[:, None], 1.0), dims=("phase", "residual")
        )
        residual = pt.switch(centred, z_residual, omega[:, None] * z_residual)
        scale_effect = pm.Deterministic(
            "scale_effect", (basis * residual[:, None, :]).sum(axis=2), dims=("phase", "scale")
        )

        sigma = pm.HalfNormal("sigma", sigma=1.0, dims="phase")
        kappa = pm.Normal("kappa", mu=0.0, sigma=0.5, dims="phase")
        nu = 1.0 + pm.Gamma("nu_minus_one", alpha=2.0, beta=0.1)

        # Every group of a (phase, scale) cell shares its location and within-run scale, so
        # both are computed per cell and gathered once per group.
        cell = phase * n_scales + scale
        cell_mu = intercept[:, None] + exponent[:, None] * scale_x[None, :] + scale_effect
        cell_log_sigma = pt.log(sigma)[:, None] + kappa[:, None] * scale_x[None, :]
        cell_variance = pt.exp(2.0 * cell_log_sigma)
        mu = cell_mu.reshape((-1,))[cell]
        variance = cell_variance.reshape((-1,))[cell]
        if groups.has_within:
            tau_run = pm.HalfNormal("tau_run", sigma=0.5, dims="phase")
            spread = pt.sqrt((tau_run**2)[phase] + variance / group_count)
            if pointwise:
                within = pm.Data("within_group", values["within_group"])
                within_sum_sq = pm.Data("within_sum_sq", values["within_sum_sq"])
                shape = (group_count[within] - 1.0) / 2.0
                rate = 1.0 / (2.0 * variance[within])
                pm.Gamma("within", alpha=shape, beta=rate, observed=within_sum_sq, shape=within.shape)
            else:
                # The Gamma log-density of every S_g, less the terms without parameters.
                half_dof = pm.Data("cell_half_dof", values["cell_half_dof"])
                cell_sum_sq = pm.Data("cell_sum_sq", values["cell_sum_sq"])
                pm.Potential(
                    "within_cells",
                    (-half_dof * (2.0 * cell_log_sigma + np.log(2.0)) - cell_sum_sq / (2.0 * cell_variance)).sum(),
                )
        else:
            spread = pt.sqrt(variance)
        pm.StudentT("group", nu=nu, mu=mu, sigma=spread, observed=group_mean, shape=mu.shape)
    return model


def pointwise_log_likelihood(idata: az.InferenceData, groups: GroupData):
    """Return the log-likelihood of each group (chain, draw, group): its mean plus its within-run term.

    Reads the variables ``group`` and ``within`` that ``pm.compute_log_likelihood`` adds.
    """
    log_lik = idata.log_likelihood
    total = log_lik["group"].values.copy()
    if "within" in log_lik:
        total[..., model_data(groups)["within_group"]] += log_lik["within"].values
    return total
