"""Writing and opening record files: round trips, schema errors and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_gen.records import (
    RecordsError,
    avalanche_dataset,
    cluster_sizes,
    open_records,
    training_dataset,
    write_records,
)
from data_gen.training import METRICS

ATTRS = {"config_toml": 'name = "test"\n', "package_versions": "{}"}


def small_groups(cluster_lists=None) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(0)
    metrics = {name: rng.random((2, 3, 5)) for name in METRICS}
    training = training_dataset([20, 50], [81, 201], [0, 1, 2], 5, metrics, np.array([[3, -1, 0], [1, 2, 4]]))
    count = 4 if cluster_lists is None else len(cluster_lists)
    columns = {
        "source": np.zeros(count),
        "topology": np.zeros(count),
        "scale": np.zeros(count),
        "h": np.full(count, 20),
        "n_params": np.full(count, 81),
        "seed": np.arange(count),
        "epoch": np.zeros(count),
        "size": rng.integers(0, 3_000_000, count),
        "area": rng.integers(0, 81, count),
        "duration": rng.integers(0, 9, count),
        "n_initial": rng.integers(0, 81, count),
        "valid": np.ones(count),
        "invalid_reason": np.zeros(count),
    }
    return training, avalanche_dataset(columns, cluster_lists)


def test_ragged_clusters_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    lists = [rng.integers(1, 2001, length).astype(np.int32) for length in (0, 3, 1500, 1)]
    training, avalanches = small_groups(lists)
    path = write_records(tmp_path / "ragged.nc", training, avalanches, ATTRS)

    tree = open_records(path)
    reopened = cluster_sizes(tree["avalanches"].to_dataset())

    assert [len(c) for c in reopened] == [0, 3, 1500, 1]
    for expected, actual in zip(lists, reopened, strict=True):
        np.testing.assert_array_equal(actual, expected)
    assert tree["avalanches"]["cluster_count"].attrs["sample_dimension"] == "cluster"


def test_integer_dtypes_survive_reopen(tmp_path):
    training, avalanches = small_groups()
    path = write_records(tmp_path / "dtypes.nc", training, avalanches, ATTRS)
    tree = open_records(path)

    for name in ("size", "area", "duration", "n_initial", "seed", "epoch", "n_params"):
        assert tree["avalanches"][name].dtype == np.int32, name
    for name in ("source", "topology", "valid", "invalid_reason"):
        assert tree["avalanches"][name].dtype == np.int8, name
    assert tree["training"]["grok_epoch"].dtype == np.int32
    np.testing.assert_array_equal(tree["avalanches"]["size"].values, avalanches["size"].values)


def test_every_variable_has_long_name(tmp_path):
    training, avalanches = small_groups([np.array([1, 2])] * 4)
    tree = open_records(write_records(tmp_path / "attrs.nc", training, avalanches, ATTRS))
    for group in ("training", "avalanches"):
        for name, variable in tree[group].to_dataset().variables.items():
            assert "long_name" in variable.attrs, f"/{group}/{name}"
    assert tree["avalanches"]["topology"].attrs["flag_meanings"].split()[0] == "barabasi_albert"


def test_missing_file_named(tmp_path):
    missing = tmp_path / "absent.nc"
    with pytest.raises(RecordsError, match=r"absent\.nc: file not found"):
        open_records(missing)


def test_corrupt_file_named(tmp_path):
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"CDF\x01 this is not a netCDF file")
    with pytest.raises(RecordsError, match=r"corrupt\.nc: not a readable NetCDF-4 file"):
        open_records(corrupt)


def test_missing_variable_named(tmp_path):
    training, avalanches = small_groups()
    path = tmp_path / "no_size.nc"
    tree = xr.DataTree.from_dict(
        {"/": xr.Dataset(attrs=ATTRS), "/training": training, "/avalanches": avalanches.drop_vars("size")}
    )
    tree.to_netcdf(path, engine="netcdf4")
    with pytest.raises(RecordsError, match=r"no_size\.nc: variable /avalanches/size is missing.*python -m data_gen"):
        open_records(path)


def test_wrong_dims_named(tmp_path):
    training, avalanches = small_groups()
    bad = training.assign(train_acc=training["train_acc"].transpose("seed", "scale", "epoch"))
    path = tmp_path / "transposed.nc"
    xr.DataTree.from_dict({"/": xr.Dataset(attrs=ATTRS), "/training": bad, "/avalanches": avalanches}).to_netcdf(
        path, engine="netcdf4"
    )
    with pytest.raises(RecordsError, match=r"/training/train_acc has dims \('seed', 'scale', 'epoch'\)"):
        open_records(path)


def test_missing_group_named(tmp_path):
    _, avalanches = small_groups()
    path = tmp_path / "only_avalanches.nc"
    xr.DataTree.from_dict({"/": xr.Dataset(attrs=ATTRS), "/avalanches": avalanches}).to_netcdf(path, engine="netcdf4")
    with pytest.raises(RecordsError, match="group /training is missing"):
        open_records(path)


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    training, avalanches = small_groups()
    path = write_records(tmp_path / "records.nc", training, avalanches, ATTRS)
    before = path.read_bytes()

    original = xr.DataTree.to_netcdf

    def crash_midway(self, filepath, *args, **kwargs):
        original(self["training"], filepath, *args, **{**kwargs, "encoding": None})  # half of the file
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", crash_midway)
    changed = training.assign(train_acc=training["train_acc"] * 0)
    with pytest.raises(KeyboardInterrupt):
        write_records(path, changed, avalanches, ATTRS)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.nc"]
    open_records(path)
