"""PyMC model builders for avalanche and training records.

Models here build a ``pm.Model`` from arrays or an xarray Dataset and never
read files or plot. No model is implemented yet; ``data_gen`` is the only
working package so far.
"""
