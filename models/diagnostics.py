"""Convergence checks of a fit, with the thresholds defined once.

``diagnose`` returns the checks as data (a dict), so logs, summary.json and the
report read the same verdict.
"""

from __future__ import annotations

import arviz as az
import numpy as np

HDI_PROB = 0.94
RHAT_MAX = 1.01
ESS_MIN = 400  # bulk and tail effective sample size
DIVERGENCES_MAX = 0
EBFMI_MIN = 0.3


def diagnose(idata: az.InferenceData, var_names: list[str] | None = None) -> dict[str, object]:
    """Return rhat_max, ess_bulk_min, ess_tail_min, divergences, ebfmi_min, passed and failed checks.

    ``var_names`` restricts R-hat and ESS to those variables (default: every posterior
    variable). A fit with a single chain has no R-hat; it is reported as NaN and fails.
    """
    posterior = idata.posterior if var_names is None else idata.posterior[var_names]
    summary = az.summary(posterior, kind="diagnostics", round_to="none")
    rhat = float(np.nanmax(summary["r_hat"])) if len(summary) else float("nan")
    ess_bulk = float(np.nanmin(summary["ess_bulk"])) if len(summary) else float("nan")
    ess_tail = float(np.nanmin(summary["ess_tail"])) if len(summary) else float("nan")

    stats = idata.get("sample_stats")
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0
    if stats is not None and "energy" in stats:
        ebfmi = float(np.min(az.bfmi(idata)))
    else:
        ebfmi = float("nan")

    failed = []
    if not rhat <= RHAT_MAX:
        failed.append(f"R-hat {rhat:.3f} > {RHAT_MAX}")
    if not ess_bulk >= ESS_MIN:
        failed.append(f"bulk ESS {ess_bulk:.0f} < {ESS_MIN}")
    if not ess_tail >= ESS_MIN:
        failed.append(f"tail ESS {ess_tail:.0f} < {ESS_MIN}")
    if divergences > DIVERGENCES_MAX:
        failed.append(f"{divergences} divergent transitions")
    if not ebfmi >= EBFMI_MIN:
        failed.append(f"E-BFMI {ebfmi:.2f} < {EBFMI_MIN}")
    return {
        "rhat_max": rhat,
        "ess_bulk_min": ess_bulk,
        "ess_tail_min": ess_tail,
        "divergences": divergences,
        "ebfmi_min": ebfmi,
        "passed": not failed,
        "failed": failed,
    }
