"""InferenceData files and summary.json: round trips and atomic writes."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest

from analysis.results import load_idata, posterior_summary, save_idata, write_json


def test_idata_round_trip_bool_and_attrs(tmp_path):
    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"D": rng.normal(size=(2, 30, 3))},
        sample_stats={"diverging": rng.random((2, 30)) < 0.1, "energy": rng.normal(size=(2, 30))},
    )
    attrs = {"tags": ["pre", "post"], "nothing": None, "config": {"a": [1, 2]}, "flag": True, "n": 3, "x": 0.5}
    path = save_idata(idata, tmp_path / "fit.nc", attrs)
    back = load_idata(path)

    assert back.sample_stats["diverging"].dtype == bool
    np.testing.assert_array_equal(back.sample_stats["diverging"].values, idata.sample_stats["diverging"].values)
    np.testing.assert_allclose(back.posterior["D"].values, idata.posterior["D"].values)
    for key, value in attrs.items():
        assert back.posterior.attrs[key] == value, key
    assert "json_attrs" not in back.posterior.attrs


def test_interrupted_idata_write_keeps_previous(tmp_path, monkeypatch):
    idata = az.from_dict(posterior={"D": np.zeros((1, 5))})
    path = save_idata(idata, tmp_path / "fit.nc")
    before = path.read_bytes()

    def crash(self, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(az.InferenceData, "to_netcdf", crash)
    with pytest.raises(KeyboardInterrupt):
        save_idata(idata, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_summary_json_has_no_nan(tmp_path):
    path = write_json(tmp_path / "summary.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float64(2)})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": 2.0}


def test_posterior_summary_interval():
    draws = np.random.default_rng(1).normal(1.0, 0.1, size=20000)
    summary = posterior_summary(draws)
    assert abs(summary["mean"] - 1.0) < 0.01
    assert abs(summary["sd"] - 0.1) < 0.01
    assert summary["hdi_low"] < 1.0 < summary["hdi_high"]
    assert abs((summary["hdi_high"] - summary["hdi_low"]) - 2 * 1.881 * 0.1) < 0.02
    assert posterior_summary([]) == {"mean": None, "sd": None, "hdi_low": None, "hdi_high": None}
