"""Inference entry points that load records, fit ``models`` and write reports.

No entry point is implemented yet; ``data_gen`` is the only working package so far.
"""
