"""The calibration section of summary.html, read from a ``calibration.json`` in the report folder.

``python -m analysis.calibrate --out REPORT_DIR`` writes that file and its figures
beside a fit_phases report. ``calibration_context`` turns them into the values that the
template shows, a coverage table per model and the rank figures as data URIs.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "calibration.json"


def _figure_uri(folder: Path, name: str | None) -> tuple[str | None, str | None]:
    """Return the PNG named ``name`` in ``folder`` as a data URI, or a note saying why it is absent."""
    if not name:
        return None, "calibration.json names no figure for this model."
    path = folder / name
    if path.name != name or not path.is_file():
        return None, f"The figure {name} is not in the report folder."
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii"), None


def _shape_text(shape: dict) -> str:
    parts = [f"{shape.get('scales', '?')} scales", f"{shape.get('runs_per_scale', '?')} runs per scale"]
    if "epochs" in shape:
        parts.append(f"{shape['epochs']} epochs")
    if "snapshots" in shape:
        parts.append(f"{shape['snapshots']} snapshots")
    return ", ".join(parts)


def calibration_context(folder: Path) -> dict | None:
    """Read ``folder/calibration.json`` for the template; None when the file is absent.

    A file that cannot be read gives a context with only ``note`` set, so the page shows
    that note instead of failing.
    """
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        models = content["models"]
        if not isinstance(models, dict):
            raise TypeError(f"'models' is a {type(models).__name__}, expected an object")
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.error("failed to read %s: %s; the calibration section shows a note instead", path, error)
        return {"note": f"{FILE_NAME} could not be read ({error}). Rerun python -m analysis.calibrate --out {folder}."}

    entries = []
    for name, entry in models.items():
        rows = []
        for parameter, result in (entry.get("parameters") or {}).items():
            rows.append(
                {
                    "parameter": parameter,
                    "replicates": result.get("replicates"),
                    "coverage_50": result.get("coverage_50"),
                    "tolerance_50": result.get("tolerance_50") or [None, None],
                    "coverage_94": result.get("coverage_94"),
                    "tolerance_94": result.get("tolerance_94") or [None, None],
                    "rank_uniformity_p": result.get("rank_uniformity_p"),
                    "within_tolerance": bool(result.get("within_tolerance")),
                }
            )
        uri, figure_note = _figure_uri(Path(folder), entry.get("figure"))
        sampler = entry.get("sampler") or {}
        entries.append(
            {
                "name": name,
                "rows": rows,
                "replicates_fitted": entry.get("replicates_fitted"),
                "replicates_requested": entry.get("replicates_requested"),
                "failed_convergence": entry.get("failed_convergence"),
                "fit_errors": len(entry.get("fit_errors") or []),
                "shape": _shape_text(entry.get("data_shape") or {}),
                "sampler": f"{sampler.get('chains', '?')} chains x {sampler.get('draws', '?')} draws, "
                f"tune {sampler.get('tune', '?')}, {sampler.get('backend', '?')}",
                "figure_uri": uri,
                "figure_note": figure_note,
            }
        )
    return {
        "note": None,
        "complete": bool(content.get("complete")),
        "quick": bool(content.get("quick")),
        "seed": content.get("seed"),
        "command": content.get("command", ""),
        "total_seconds": (content.get("wall_seconds") or {}).get("total"),
        "models": entries,
    }
