"""Shared fixtures: a tiny experiment configuration and helpers to compare record files."""

from __future__ import annotations

import dataclasses

import pytest
import xarray as xr

from data_gen.config import ExperimentConfig, ProbeConfig, SweepConfig, SyntheticConfig, TrainingConfig


@pytest.fixture
def tiny_config() -> ExperimentConfig:
    """Two widths, four seeds in shards of two, two synthetic topologies, clusters recorded."""
    return ExperimentConfig(
        name="tiny",
        training=dataclasses.replace(TrainingConfig(), hidden=(8, 12), seeds=4, epochs=30, snapshot_every=5),
        probe=ProbeConfig(record_clusters=True),
        synthetic=SyntheticConfig(topologies=("barabasi_albert", "ring_lattice")),
        sweep=SweepConfig(seeds_per_shard=2),
    )


def assert_same_records(path_a, path_b) -> None:
    """Both files hold identical groups, variables, attributes and global attributes."""
    with xr.open_datatree(path_a, engine="netcdf4") as a, xr.open_datatree(path_b, engine="netcdf4") as b:
        assert dict(a.attrs) == dict(b.attrs)
        for group in ("training", "avalanches"):
            xr.testing.assert_identical(a[group].to_dataset().load(), b[group].to_dataset().load())
