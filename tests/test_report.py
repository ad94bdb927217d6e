"""Tests of analysis.report on a real smoke-preset report folder built once per module."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import headless
import pytest

from analysis import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"


class PageParser(HTMLParser):
    """Collect every src and href, the <img> sources, and the text of the verdict section."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.verdict_text: list[str] = []
        self._verdict_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag == "section" and attrs.get("id") == "verdict":
            self._verdict_depth = 1
        elif tag == "section" and self._verdict_depth:
            self._verdict_depth += 1

    def handle_endtag(self, tag):
        if tag == "section" and self._verdict_depth:
            self._verdict_depth -= 1

    def handle_data(self, data):
        if self._verdict_depth:
            self.verdict_text.append(data)


def verdict_of(path: Path) -> str:
    """Text of the verdict section with runs of whitespace collapsed to one space."""
    return " ".join("".join(parse(path).verdict_text).split())


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """A smoke records file and its quick fit_phases folder (about 2 minutes on 2 cores)."""
    root = tmp_path_factory.mktemp("report")
    records = root / "smoke.nc"
    folder = root / "report"
    subprocess.run(
        [sys.executable, "-m", "data_gen", "--preset", "smoke", "--out", str(records), "--no-progress"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.fit_phases",
            str(records),
            "--out",
            str(folder),
            "--quick",
            "--no-leave-one-scale-out",
            "--tau-draws",
            "0",
        ],
        check=True,
        capture_output=True,
    )
    return folder


@pytest.fixture(scope="module")
def rendered(fitted) -> Path:
    return report.render_report(fitted)


def few_figures(names: set[str]):
    """A figure_specs replacement that keeps only the named fixed figures, to keep reruns short."""

    def specs(data):
        return [spec for spec in report.FIGURES if spec.name in names]

    return specs


def test_report_writes_page_figures_tables(fitted, rendered):
    assert rendered == fitted / "summary.html"
    assert rendered.is_file()
    assert (fitted / "figures" / "d_of_t.png").is_file()
    assert (fitted / "figures" / "d_of_t.svg").is_file()
    assert (fitted / "tables" / "fss_D_plugin_summary.csv").is_file()
    assert (fitted / "tables" / "changepoint_summary.csv").is_file()
    header = (fitted / "tables" / "fss_D_max_summary.csv").read_text().splitlines()[0]
    assert "hdi_3%" in header
    assert "r_hat" in header


def test_report_images_are_data_uris(rendered):
    page = parse(rendered)
    assert len(page.images) >= 10
    for src in page.images:
        match = re.fullmatch(r"data:image/(png|svg\+xml);base64,([A-Za-z0-9+/=]+)", src)
        assert match, src[:80]
        content = base64.b64decode(match.group(2), validate=True)
        if match.group(1) == "png":
            assert content.startswith(PNG_SIGNATURE)
        else:
            assert b"<svg" in content[:2000]


def test_page_renders_in_headless_chromium(rendered, tmp_path):
    """The page loads offline in a real browser: no console errors, no request leaves the file, every image decodes."""
    binary = headless.find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs Debian's chromium package for this test.")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    visit = headless.visit(binary, rendered)
    screenshot = tmp_path / "summary.png"
    screenshot.write_bytes(visit.screenshot)
    assert visit.screenshot.startswith(PNG_SIGNATURE), f"no screenshot; see {screenshot}"
    assert visit.console_errors == [], visit.console_errors
    outside = [url for url in visit.requests if not url.startswith(("file:", "data:"))]
    assert outside == [], outside
    assert len(visit.images) == len(parse(rendered).images)
    blank = [image for image in visit.images if not (image["complete"] and image["naturalWidth"] > 0)]
    assert blank == [], blank


def test_report_has_no_external_links_or_scripts(rendered):
    page = parse(rendered)
    assert page.scripts == 0
    for link in page.links:
        assert link.startswith(("data:", "#")), link[:80]
    text = rendered.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|ftp:|file:)""", text, re.IGNORECASE)
    assert "<link" not in text
    assert "@import" not in text
    assert "url(" not in text


def test_verdict_shows_headline_numbers(fitted, rendered):
    summary = json.loads((fitted / "summary.json").read_text())
    verdict = verdict_of(rendered)
    for phase in ("pre", "post", "synthetic"):
        entry = summary["D"][phase]
        shown = f"{entry['mean']:.3f} (94% HDI {entry['hdi_low']:.3f} to {entry['hdi_high']:.3f})"
        assert shown in verdict, phase
    comparisons = summary["comparisons"]
    for key in ("p_post_gt_pre", "p_pre_lt_1", "p_post_gt_1"):
        assert f"= {comparisons[key]:.3f}" in verdict, key
    assert f"= {comparisons['synthetic_rope']['p_inside']:.3f}" in verdict


def test_verdict_names_failed_fits_first(fitted, rendered):
    summary = json.loads((fitted / "summary.json").read_text())
    verdict = verdict_of(rendered)
    if summary["all_checks_passed"]:
        assert "Convergence checks failed" not in verdict
        return
    assert verdict.index("Convergence checks failed") < verdict.index("D before grokking")
    for name in summary["failed_fits"]:
        assert name in verdict


def test_verdict_compares_published_values(rendered):
    verdict = verdict_of(rendered)
    assert "0.90 ± 0.02" in verdict
    assert "1.20 ± 0.02" in verdict
    assert "0.99 ± 0.01" in verdict
    assert "sample-maximum estimator" in verdict


def test_diagnostics_table_has_every_fit(fitted, rendered):
    summary = json.loads((fitted / "summary.json").read_text())
    text = rendered.read_text(encoding="utf-8")
    diagnostics = text[text.index('id="diagnostics"') : text.index('id="figures"')]
    for name, check in summary["diagnostics"].items():
        assert f"<td>{name}</td>" in diagnostics
        assert f"{check['rhat_max']:.3f}" in diagnostics
    assert diagnostics.count("<tr>") == len(summary["diagnostics"]) + 1


def test_failing_figure_leaves_note(fitted, monkeypatch, tmp_path):
    folder = tmp_path / "report"
    shutil.copytree(fitted, folder, ignore=shutil.ignore_patterns("figures", "tables", "summary.html"))

    def broken(data):
        raise RuntimeError("deliberate failure in a test")

    kept = {"d_of_t", "tau_vs_n", "topology"}
    specs = [
        spec if spec.name != "tau_vs_n" else report.FigureSpec(spec.name, spec.title, spec.caption, broken)
        for spec in report.FIGURES
        if spec.name in kept
    ]
    monkeypatch.setattr(report, "figure_specs", lambda data: specs)
    path = report.render_report(folder)

    text = path.read_text(encoding="utf-8")
    page = parse(path)
    assert "This figure failed: RuntimeError: deliberate failure in a test" in text
    assert len(page.images) == 2
    assert (folder / "figures" / "d_of_t.png").is_file()
    assert not (folder / "figures" / "tau_vs_n.png").exists()
    assert 'id="verdict"' in text
    assert 'id="diagnostics"' in text
    assert 'id="provenance"' in text


def test_config_text_is_escaped(fitted, monkeypatch, tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    summary = json.loads((fitted / "summary.json").read_text())
    summary["data_gen_config"] = f'name = "{SCRIPT}"\n'
    (folder / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(report, "figure_specs", few_figures({"d_of_t"}))
    path = report.render_report(folder)

    text = path.read_text(encoding="utf-8")
    assert SCRIPT not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert parse(path).scripts == 0


def test_missing_input_file_leaves_note(fitted, monkeypatch, tmp_path):
    folder = tmp_path / "report"
    shutil.copytree(fitted, folder, ignore=shutil.ignore_patterns("figures", "tables", "summary.html"))
    summary = json.loads((folder / "summary.json").read_text())
    summary["input"]["path"] = str(tmp_path / "absent.nc")
    (folder / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(report, "figure_specs", few_figures({"gini", "d_of_t"}))
    path = report.render_report(folder)

    text = path.read_text(encoding="utf-8")
    assert "absent.nc was not found" in text
    assert "Not shown: needs the input records file" in text
    assert len(parse(path).images) == 1


def test_cli_rejects_folder_without_summary(tmp_path):
    assert report.main([str(tmp_path)]) == 2


def test_minimal_summary_renders(tmp_path):
    summary = {
        "D": {"all": {"mean": 1.0, "sd": 0.1, "hdi_low": 0.8, "hdi_high": 1.2}},
        "input": {"path": str(tmp_path / "absent.nc"), "kind": "external"},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    path = report.render_report(tmp_path)

    verdict = verdict_of(path)
    assert "1.000 (94% HDI 0.800 to 1.200)" in verdict
    assert "P(D_post > D_pre) = n/a" in verdict
    assert "Not shown:" in path.read_text(encoding="utf-8")
