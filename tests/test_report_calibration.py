"""Tests of the calibration section of summary.html, on report folders built here without fits."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from analysis import sbc
from analysis.report import render_report
from analysis.results import write_json
from analysis.sbc_plots import write_model_figure


class CalibrationParser(HTMLParser):
    """Collect the text, table cells and image sources inside <section id="calibration">."""

    def __init__(self):
        super().__init__()
        self.found = False
        self.text: list[str] = []
        self.images: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("id") == "calibration":
            self.found = True
            self._depth = 1
        elif tag == "section" and self._depth:
            self._depth += 1
        elif tag == "img" and self._depth:
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "section" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.text.append(data)


def parse_section(path: Path) -> CalibrationParser:
    parser = CalibrationParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def calibration_entry(rng: np.random.Generator, biased: bool) -> dict:
    """A calibration.json parameter entry from 40 uniform ranks, or from ranks piled at 0."""
    ranks = np.zeros(40, dtype=int) if biased else rng.integers(0, 101, size=40)
    pits = np.zeros(40) if biased else rng.random(40)
    return sbc.summarise(ranks, 100, pits, rng)


@pytest.fixture
def report_folder(tmp_path) -> Path:
    """A report folder with an empty summary.json, so every fit_phases figure is left out."""
    folder = tmp_path / "report"
    folder.mkdir()
    write_json(folder / "summary.json", {})
    return folder


def write_calibration(folder: Path, with_figure: bool = True) -> None:
    rng = np.random.default_rng(0)
    parameters = {"mu": calibration_entry(rng, biased=False), "sigma": calibration_entry(rng, biased=True)}
    entry = {
        "data_shape": {"scales": 8, "runs_per_scale": 4, "epochs": 300},
        "sampler": {"chains": 4, "draws": 1500, "tune": 1000, "backend": "nutpie"},
        "replicates_requested": 40,
        "replicates_fitted": 40,
        "fit_errors": [],
        "failed_convergence": 3,
        "parameters": parameters,
    }
    if with_figure:
        entry["figure"] = write_model_figure(folder / "sbc_changepoint.png", "changepoint", parameters).name
    else:
        entry["figure"] = "sbc_changepoint.png"
    content = {
        "complete": True,
        "quick": False,
        "seed": 0,
        "command": "python -m analysis.calibrate",
        "models": {"changepoint": entry},
    }
    write_json(folder / "calibration.json", content)


def test_report_shows_calibration_section(report_folder):
    write_calibration(report_folder)
    section = parse_section(render_report(report_folder))
    text = " ".join("".join(section.text).split())
    assert section.found
    assert "Simulation-based calibration" in text
    assert "changepoint" in text
    assert "mu" in text
    assert "sigma" in text
    assert "✓ yes" in text  # mu: uniform ranks
    assert "✗ no" in text  # sigma: every truth below its posterior
    assert "Fits that failed the convergence checks: 3" in text
    assert len(section.images) == 1
    assert section.images[0].startswith("data:image/png;base64,")


def test_report_without_calibration_file_has_no_section(report_folder):
    section = parse_section(render_report(report_folder))
    assert not section.found


def test_report_notes_missing_calibration_figure(report_folder):
    write_calibration(report_folder, with_figure=False)
    section = parse_section(render_report(report_folder))
    text = " ".join("".join(section.text).split())
    assert section.images == []
    assert "The figure sbc_changepoint.png is not in the report folder." in text


def test_report_notes_unreadable_calibration_file(report_folder):
    (report_folder / "calibration.json").write_text("{not json", encoding="utf-8")
    section = parse_section(render_report(report_folder))
    text = " ".join("".join(section.text).split())
    assert section.found
    assert "calibration.json could not be read" in text


def test_report_ignores_figure_paths_outside_folder(report_folder, tmp_path):
    write_calibration(report_folder)
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n")
    content = json.loads((report_folder / "calibration.json").read_text())
    content["models"]["changepoint"]["figure"] = "../elsewhere.png"
    write_json(report_folder / "calibration.json", content)
    section = parse_section(render_report(report_folder))
    assert section.images == []
