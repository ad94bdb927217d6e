"""PyMC model builders for avalanche and training records.

Every model builds a ``pm.Model`` from plain arrays or an xarray Dataset, so it runs on
any data of the right shape; nothing here reads files or plots. Fitting returns
``arviz.InferenceData``. The dims used in every model and in the InferenceData files:

============ ==============================================================
dim          meaning
============ ==============================================================
``scale``    one network size; ``n_params`` (N) is its parameter count
``run``      one training run (a seed at one scale)
``epoch``    training epoch
``snapshot`` one probed gradient snapshot
``phase``    ``pre`` (before grokking), ``post`` (after) or ``synthetic``
``topology`` graph family of the probe
``bin``      bin of grokking-aligned time (epoch - tau)
============ ==============================================================
"""
