"""Data generator: train small networks, probe gradient snapshots, write NetCDF records.

Run ``python -m data_gen --help``. Public entry points: ``run_sweep`` to run an
experiment from Python, ``open_records`` to open and validate its output.
This package never imports ``analysis``.
"""

from data_gen.records import RecordsError, cluster_sizes, open_records
from data_gen.sweep import run_sweep

__all__ = ["RecordsError", "cluster_sizes", "open_records", "run_sweep"]
