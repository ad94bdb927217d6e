"""Whole sweeps: determinism, resume after an interruption, and the Dask paths."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same_records

import data_gen.sweep as sweep
from data_gen import open_records, run_sweep
from data_gen.sweep import plan_shards, shard_folder


def test_same_config_twice_identical(tiny_config, tmp_path):
    first = run_sweep(tiny_config, tmp_path / "a.nc", progress=False)
    second = run_sweep(tiny_config, tmp_path / "b.nc", progress=False)
    assert_same_records(first, second)


def test_sweep_output_layout(tiny_config, tmp_path):
    path = run_sweep(tiny_config, tmp_path / "tiny.nc", progress=False)
    tree = open_records(path)
    training, avalanches = tree["training"], tree["avalanches"]

    assert dict(training.sizes) == {"scale": 2, "seed": 4, "epoch": 30}
    assert training["n_params"].values.tolist() == [33, 49]
    # 8 runs x 6 snapshots, once real and once per synthetic topology.
    assert avalanches.sizes["snapshot"] == 8 * 6 * 3
    assert (avalanches["source"] == 0).sum() == 48
    assert np.unique(avalanches["topology"].values[avalanches["source"].values == 1]).tolist() == [0, 4]
    assert not shard_folder(path).exists()


def test_resume_after_interruption(tiny_config, tmp_path, monkeypatch):
    reference = run_sweep(tiny_config, tmp_path / "reference.nc", progress=False)
    out = tmp_path / "resumed.nc"
    real_compute = sweep.compute_shard
    calls = []

    def interrupted(config, shard, folder):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption after two shards")
        calls.append(shard.name)
        return real_compute(config, shard, folder)

    monkeypatch.setattr(sweep, "compute_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_config, out, progress=False)
    assert not out.exists()
    finished = sorted(p.name for p in shard_folder(out).glob("shard-*.nc"))
    assert finished == sorted(f"{name}.nc" for name in calls)

    # A corrupt leftover counts as incomplete and is recomputed.
    remaining = [s for s in plan_shards(tiny_config) if s.name not in calls]
    (shard_folder(out) / f"{remaining[0].name}.nc").write_bytes(b"truncated")

    recomputed = []

    def counting(config, shard, folder):
        recomputed.append(shard.name)
        return real_compute(config, shard, folder)

    monkeypatch.setattr(sweep, "compute_shard", counting)
    run_sweep(tiny_config, out, resume=True, progress=False)

    assert sorted(recomputed) == sorted(s.name for s in remaining)
    assert not set(recomputed) & set(calls)
    assert_same_records(reference, out)


def test_resume_recomputes_shards_of_other_config(tiny_config, tmp_path, monkeypatch):
    import dataclasses

    out = tmp_path / "out.nc"
    run_sweep(tiny_config, out, keep_shards=True, progress=False)
    changed = dataclasses.replace(tiny_config, probe=dataclasses.replace(tiny_config.probe, threshold=2.5))
    recomputed = []
    real_compute = sweep.compute_shard

    def counting(config, shard, folder):
        recomputed.append(shard.name)
        return real_compute(config, shard, folder)

    monkeypatch.setattr(sweep, "compute_shard", counting)
    run_sweep(changed, out, resume=True, progress=False)
    assert len(recomputed) == len(plan_shards(changed))


def test_dask_paths_match_in_process(tiny_config, tmp_path):
    from dask.distributed import LocalCluster

    in_process = run_sweep(tiny_config, tmp_path / "local.nc", progress=False)
    on_local_cluster = run_sweep(tiny_config, tmp_path / "workers.nc", workers=2, progress=False)
    assert_same_records(in_process, on_local_cluster)

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        on_scheduler = run_sweep(
            tiny_config, tmp_path / "scheduler.nc", scheduler=cluster.scheduler_address, progress=False
        )
    assert_same_records(in_process, on_scheduler)


def test_resume_of_finished_file_computes_nothing(tiny_config, tmp_path, monkeypatch):
    out = run_sweep(tiny_config, tmp_path / "done.nc", progress=False)
    before = out.read_bytes()

    def fail(*args):
        raise AssertionError("a shard was recomputed")

    monkeypatch.setattr(sweep, "compute_shard", fail)
    run_sweep(tiny_config, out, resume=True, progress=False)
    assert out.read_bytes() == before
