"""Growth of wall time and peak memory of data_gen and fit_phases with the seeds per scale.

    python bench/bench_growth.py [--seeds 16,64,256,1000] [--workers 2] [--out DIR] [--quick]

For each seed count, runs ``python -m data_gen --preset paper --seeds S`` and then
``python -m analysis.fit_phases`` on its output, each in a fresh process, and records the
wall time and the peak resident memory of the largest process in the tree (Dask
workers included). fit_phases stages come from the ``wall_seconds`` of summary.json.
At the end it prints, for every stage, the exponent b of time = a * seeds^b fitted by
least squares on log-log axes: b near 1 is linear growth. The 1000-seed point is the
paper preset. The default seed counts took 36 minutes in all on 2 idle cores, 18 of
them at 1000 seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


def run_measured(command: list[str], log_path: Path) -> tuple[float, float]:
    """Run ``command``; return its wall seconds and the peak RSS in GiB of any process in its tree."""
    peak = 0
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        done = threading.Event()

        def poll():
            nonlocal peak
            while not done.is_set():
                try:
                    tree = [root, *root.children(recursive=True)]
                    peak = max([peak, *(p.memory_info().rss for p in tree if p.is_running())])
                except psutil.Error:
                    pass
                done.wait(0.2)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        status = process.wait()
        done.set()
        watcher.join()
        wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {status}; see {log_path}")
    return wall, peak / 2**30


def growth_exponent(seeds: list[int], seconds: list[float]) -> float:
    """Slope of log seconds on log seeds."""
    return float(np.polyfit(np.log(seeds), np.log(seconds), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="16,64,256,1000", help="seed counts per scale (default: 16,64,256,1000)")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers of data_gen (default: 2)")
    parser.add_argument("--out", type=Path, default=None, help="folder for data, reports and logs (default: temporary)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to fit_phases (short chains)")
    parser.add_argument("--data-gen-only", action="store_true", help="time data_gen only, skipping fit_phases")
    args = parser.parse_args()
    seeds = sorted({int(s) for s in args.seeds.split(",")})
    if len(seeds) < 2:
        parser.error("--seeds needs at least two values to fit a growth exponent")

    with tempfile.TemporaryDirectory(prefix="bench-growth-") as scratch:
        root = args.out or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        rows = []
        for count in seeds:
            records = root / f"seeds{count}.nc"
            report = root / f"seeds{count}"
            gen_command = [sys.executable, "-m", "data_gen", "--preset", "paper", "--seeds", str(count)]
            gen_command += ["--workers", str(args.workers), "--out", str(records), "--no-progress"]
            gen_seconds, gen_peak = run_measured(gen_command, root / f"data_gen_{count}.log")
            row = {"seeds": count, "data_gen": gen_seconds, "data_gen_peak_gib": gen_peak}
            row["file_mib"] = records.stat().st_size / 2**20
            line = f"seeds {count:>5}: data_gen {gen_seconds:7.1f} s (peak {gen_peak:.2f} GiB, file {row['file_mib']:.1f} MiB)"
            if not args.data_gen_only:
                fit_command = [sys.executable, "-m", "analysis.fit_phases", str(records), "--out", str(report)]
                fit_command += ["--quick"] if args.quick else []
                fit_seconds, fit_peak = run_measured(fit_command, root / f"fit_phases_{count}.log")
                stages = json.loads((report / "summary.json").read_text()).get("wall_seconds", {})
                row.update({"fit_phases": fit_seconds, "fit_phases_peak_gib": fit_peak})
                row.update({f"fit:{k}": v for k, v in stages.items() if k != "total"})
                line += f", fit_phases {fit_seconds:7.1f} s (peak {fit_peak:.2f} GiB)"
            rows.append(row)
            print(line, flush=True)

    print("\ngrowth exponent b of time = a * seeds^b (1 = linear)")
    stage_names = [k for k in rows[0] if k not in ("seeds",) and not k.endswith(("_gib", "_mib"))]
    for name in stage_names:
        if all(name in row and row[name] > 0 for row in rows):
            times = [row[name] for row in rows]
            print(f"  {name:<24} b = {growth_exponent(seeds, times):.2f}   ({', '.join(f'{t:.1f}' for t in times)} s)")


if __name__ == "__main__":
    main()
