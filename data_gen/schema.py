"""The schema of the output file: groups, variables, dims, dtypes and CF attributes.

``docs/file-format.md`` describes the same schema for readers; ``records.open_records``
validates files against the tables here.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_gen.config import TOPOLOGIES
from data_gen.probe import INVALID_REASONS

SOURCES = ("real", "synthetic")


@dataclass(frozen=True)
class Variable:
    dims: tuple[str, ...]
    dtype: str  # numpy dtype name written to the file
    long_name: str
    units: str | None = None
    required: bool = True


TRAINING = {
    "h": Variable(("scale",), "int32", "hidden width", "neurons"),
    "n_params": Variable(("scale",), "int32", "number of network parameters N", "parameters"),
    "seed": Variable(("seed",), "int32", "run index within a scale"),
    "epoch": Variable(("epoch",), "int32", "training epoch (one full-batch step)", "epochs"),
    "train_acc": Variable(("scale", "seed", "epoch"), "float32", "training accuracy", "1"),
    "eval_acc": Variable(("scale", "seed", "epoch"), "float32", "evaluation accuracy", "1"),
    "train_loss": Variable(("scale", "seed", "epoch"), "float32", "training binary cross-entropy", "nats"),
    "eval_loss": Variable(("scale", "seed", "epoch"), "float32", "evaluation binary cross-entropy", "nats"),
    "grad_norm": Variable(("scale", "seed", "epoch"), "float32", "L2 norm of the full loss gradient", "1"),
    "gini_abs_theta": Variable(
        ("scale", "seed", "epoch"), "float32", "Gini coefficient of the absolute parameter values", "1"
    ),
    "grok_epoch": Variable(
        ("scale", "seed"), "int32", "first epoch from which training accuracy stays solved (-1: never)", "epochs"
    ),
}

AVALANCHES = {
    "source": Variable(("snapshot",), "int8", "snapshot source"),
    "topology": Variable(("snapshot",), "int8", "probe graph topology"),
    "scale": Variable(("snapshot",), "int16", "index into the training scale dimension"),
    "h": Variable(("snapshot",), "int32", "hidden width", "neurons"),
    "n_params": Variable(("snapshot",), "int32", "number of graph nodes N (network parameters)", "parameters"),
    "seed": Variable(("snapshot",), "int32", "run index within a scale"),
    "epoch": Variable(("snapshot",), "int32", "training epoch of the gradient snapshot", "epochs"),
    "size": Variable(("snapshot",), "int32", "avalanche size (number of topplings)", "topplings"),
    "area": Variable(("snapshot",), "int32", "avalanche area (distinct toppled nodes)", "nodes"),
    "duration": Variable(("snapshot",), "int32", "avalanche duration (sweeps with a toppling)", "sweeps"),
    "n_initial": Variable(("snapshot",), "int32", "nodes at or above threshold before relaxation", "nodes"),
    "valid": Variable(("snapshot",), "int8", "snapshot was relaxed to completion (1) or not (0)"),
    "invalid_reason": Variable(("snapshot",), "int8", "reason a snapshot is invalid"),
    "cluster_count": Variable(("snapshot",), "int32", "number of toppled-node clusters", required=False),
    "cluster_size": Variable(("cluster",), "int32", "nodes in a cluster of toppled nodes", "nodes", required=False),
}

# Variables stored as CF flags: integer codes whose meanings are listed in the attributes.
FLAGS = {
    "source": SOURCES,
    "topology": TOPOLOGIES,
    "invalid_reason": INVALID_REASONS,
    "valid": ("invalid", "valid"),
}

COORDS = {
    "training": ("h", "n_params", "seed", "epoch"),
    "avalanches": ("source", "topology", "scale", "h", "n_params", "seed", "epoch"),
}

GROUPS = {"training": TRAINING, "avalanches": AVALANCHES}

UNRELAXED_COMMENT = "-1 where valid is 0 because the snapshot was all zero or non-finite"


def variable_attrs(group: str, name: str) -> dict[str, object]:
    """CF attributes of one variable: long_name, units where it has one, flag tables for codes."""
    spec = GROUPS[group][name]
    attrs: dict[str, object] = {"long_name": spec.long_name}
    if spec.units is not None:
        attrs["units"] = spec.units
    if name in FLAGS:
        meanings = FLAGS[name]
        attrs["flag_values"] = list(range(len(meanings)))
        attrs["flag_meanings"] = " ".join(meanings)
    if group == "avalanches" and name in ("size", "area", "duration", "n_initial"):
        attrs["comment"] = UNRELAXED_COMMENT
    if name == "cluster_count":
        attrs["sample_dimension"] = "cluster"
    return attrs
