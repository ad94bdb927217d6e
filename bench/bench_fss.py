"""Wall time and bulk ESS per second of D for each available NUTS sampler, and the bootstrap.

    python bench/bench_fss.py [--seeds 16] [--draws 1000]

Fits the headline scaling model on simulated data of the default preset's size (8
scales x 16 runs x 150 snapshots, three phases), once per sampler backend, with the
same settings; then times the published method's 10,000-resample bootstrap of s_max
on the same runs. Compilation is timed separately from sampling.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import arviz as az

from analysis.bootstrap import bootstrap_slope
from analysis.phases import max_size_groups, split_phases, typical_size_groups
from analysis.simulate import simulate_records
from models.fss import build_model
from models.sampling import Sampler, SamplerSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="runs per scale (default: 16)")
    parser.add_argument("--draws", type=int, default=1000, help="draws and tuning steps per chain (default: 1000)")
    args = parser.parse_args()

    data, _, tau = simulate_records(seed=0, n_seeds=args.seeds, epochs=300)
    split = split_phases(data, tau)
    groups = typical_size_groups(data, split)
    print(f"{len(data.snapshots.size)} snapshots in {len(groups.mean)} (run, phase) groups")

    backends = ["nutpie"] if importlib.util.find_spec("nutpie") else []
    backends.append("pymc")
    rates = {}
    print(f"{'sampler':<8} {'compile+first s':>15} {'sampling s':>11} {'min bulk ESS of D':>18} {'ESS/s':>8}")
    for backend in backends:
        settings = SamplerSettings(draws=args.draws, tune=args.draws, chains=4, seed=1, backend=backend)
        sampler = Sampler(build_model(groups), settings)
        started = time.perf_counter()
        sampler.sample()
        first = time.perf_counter() - started
        started = time.perf_counter()
        idata = sampler.sample(seed=2)
        seconds = time.perf_counter() - started
        ess = float(az.ess(idata, var_names=["D"])["D"].min())
        rates[backend] = ess / seconds
        print(f"{backend:<8} {first:>15.1f} {seconds:>11.1f} {ess:>18.0f} {rates[backend]:>8.0f}")
    if len(rates) == 2:
        print(f"ESS/s ratio nutpie / pymc: {rates['nutpie'] / rates['pymc']:.1f}")

    max_groups, _ = max_size_groups(data, split, tau, 10)
    rows = max_groups.phase == 0
    started = time.perf_counter()
    bootstrap_slope(max_groups.log_n[max_groups.scale[rows]], max_groups.mean[rows], max_groups.scale[rows])
    bootstrap_seconds = time.perf_counter() - started
    started = time.perf_counter()
    Sampler(build_model(max_groups, exponent_name="D_max"), SamplerSettings(seed=1)).sample()
    posterior_seconds = time.perf_counter() - started
    print(
        f"bootstrap, 10,000 resamples, one phase: {bootstrap_seconds:.2f} s; "
        f"posterior fit of D_max (compile included): {posterior_seconds:.1f} s; "
        f"ratio {posterior_seconds / bootstrap_seconds:.0f}"
    )


if __name__ == "__main__":
    main()
