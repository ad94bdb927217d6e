"""Experiment configuration: dataclasses, TOML presets and validation.

A configuration has four sections, each a frozen dataclass with one comment per
field. Presets live in ``configs/<name>.toml``; a user file may set any subset
of fields and the rest keep their defaults. ``config_to_toml`` writes the full
configuration back as TOML text, which the output file stores verbatim.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PRESETS = ("smoke", "default", "paper")

# Graph families of the avalanche probe, in the order of their integer codes in the file.
TOPOLOGIES = (
    "barabasi_albert",
    "erdos_renyi",
    "watts_strogatz",
    "random_regular",
    "ring_lattice",
)


class ConfigError(ValueError):
    """An invalid configuration value, named with the value received and the fix."""


@dataclass(frozen=True)
class TrainingConfig:
    task: str = "xor"  # name in data_gen.tasks.TASKS
    hidden: tuple[int, ...] = (20, 32, 50, 79, 126, 199, 316, 500)  # hidden widths h, one scale each
    seeds: int = 16  # runs per scale
    epochs: int = 300  # full-batch gradient steps per run
    snapshot_every: int = 2  # epochs between gradient snapshots, starting at epoch 0
    optimizer: str = "sgd_momentum"  # only heavy-ball SGD is implemented
    learning_rate: float = 0.1
    momentum: float = 0.9
    init_scale: float = 0.3  # weights ~ N(0, (init_scale)^2 / fan_in); biases start at 0
    activation: str = "tanh"  # "tanh" or "relu"
    dtype: str = "float32"  # "float32" or "float64" for parameters, gradients and snapshots


@dataclass(frozen=True)
class ProbeConfig:
    threshold: float = 2.0  # toppling threshold z_c on the normalised load |g_i| / mean |g|
    alpha: float = 0.8  # fraction of a toppling node's load passed to its neighbours, in (0, 1)
    topology: str = "barabasi_albert"  # graph for the real gradient snapshots
    mean_degree: int = 4  # even; BA uses m = mean_degree / 2, the other families match it
    rewire_probability: float = 0.1  # Watts-Strogatz rewiring probability
    graph_seed: int = 0  # seed of every graph and node permutation, one graph per (topology, N)
    permute_nodes: bool = True  # place g_i on node perm(i); False places it on node i
    max_sweeps: int = 10_000  # a relaxation still active after this many sweeps is flagged invalid
    record_clusters: bool = False  # also store sizes of connected clusters of toppled nodes


@dataclass(frozen=True)
class SyntheticConfig:
    enabled: bool = True  # probe i.i.d. standard Gaussian snapshots as a null control
    topologies: tuple[str, ...] = TOPOLOGIES  # one synthetic snapshot per real one on each


@dataclass(frozen=True)
class SweepConfig:
    seed: int = 0  # root seed; a run is reproducible from (seed, h, run index)
    seeds_per_shard: int = 16  # runs trained together in one shard (one Dask task)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    training: TrainingConfig = field(default_factory=TrainingConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    @property
    def n_snapshots_per_run(self) -> int:
        return len(snapshot_epochs(self.training))


def snapshot_epochs(training: TrainingConfig) -> list[int]:
    """Epochs at which a full gradient snapshot is taken."""
    return list(range(0, training.epochs, training.snapshot_every))


_SECTIONS = {
    "training": TrainingConfig,
    "probe": ProbeConfig,
    "synthetic": SyntheticConfig,
    "sweep": SweepConfig,
}


def _build_section(cls: type, values: dict[str, Any], source: str, section: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} in [{section}]; allowed keys are {sorted(known)}.")
    converted = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        converted[name] = tuple(value) if isinstance(default, tuple) else value
    return cls(**converted)


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Build and validate a configuration from a nested dict, as parsed from TOML."""
    data = dict(data)
    name = data.pop("name", "custom")
    sections = {}
    for section, cls in _SECTIONS.items():
        sections[section] = _build_section(cls, data.pop(section, {}), source, section)
    if data:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {sorted(data)}; "
            f"allowed are 'name' and the sections {sorted(_SECTIONS)}."
        )
    config = ExperimentConfig(name=name, **sections)
    validate_config(config, source)
    return config


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a TOML configuration file; keys it leaves out keep their defaults."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Configuration file {path} not found; pass an existing TOML file.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return config_from_dict(data, source=str(path))


def load_preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {list(PRESETS)}.")
    return load_config(CONFIG_DIR / f"{name}.toml")


def with_overrides(config: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """Return a copy with ``section__field=value`` overrides applied and validated.

    A value of None leaves the field unchanged, so argparse results pass straight through.
    """
    sections = {name: getattr(config, name) for name in _SECTIONS}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.partition("__")
        if section not in sections or name not in {f.name for f in dataclasses.fields(sections[section])}:
            raise ConfigError(f"Unknown override {key!r}; use section__field, e.g. training__epochs.")
        sections[section] = dataclasses.replace(sections[section], **{name: value})
    updated = dataclasses.replace(config, **sections)
    validate_config(updated, "command-line overrides")
    return updated


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    data = {"name": config.name}
    for section in _SECTIONS:
        values = dataclasses.asdict(getattr(config, section))
        data[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return data


def config_to_toml(config: ExperimentConfig) -> str:
    return tomli_w.dumps(config_to_dict(config))


def config_hash(config: ExperimentConfig) -> str:
    """SHA-256 of everything that changes the data; shards from another config are recomputed."""
    return hashlib.sha256(config_to_toml(config).encode()).hexdigest()


def _require(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{source}: {message}")


def validate_config(config: ExperimentConfig, source: str = "<config>") -> None:
    """Raise ConfigError naming the first invalid field, the value received and what is allowed."""
    from data_gen.tasks import TASKS  # deferred: tasks imports torch

    t, p, s = config.training, config.probe, config.synthetic
    _require(t.task in TASKS, source, f"training.task = {t.task!r} is not registered; known tasks: {sorted(TASKS)}.")
    _require(len(t.hidden) >= 1, source, "training.hidden is empty; give at least one hidden width.")
    _require(
        all(isinstance(h, int) and h >= 1 for h in t.hidden),
        source,
        f"training.hidden = {list(t.hidden)} must hold positive integers.",
    )
    _require(len(set(t.hidden)) == len(t.hidden), source, f"training.hidden = {list(t.hidden)} has duplicates.")
    _require(t.seeds >= 1, source, f"training.seeds = {t.seeds} must be >= 1.")
    _require(t.epochs >= 1, source, f"training.epochs = {t.epochs} must be >= 1.")
    _require(t.snapshot_every >= 1, source, f"training.snapshot_every = {t.snapshot_every} must be >= 1 epoch.")
    _require(
        t.optimizer == "sgd_momentum",
        source,
        f"training.optimizer = {t.optimizer!r} is not implemented; use 'sgd_momentum'.",
    )
    _require(t.learning_rate > 0, source, f"training.learning_rate = {t.learning_rate} must be > 0.")
    _require(0 <= t.momentum < 1, source, f"training.momentum = {t.momentum} must be in [0, 1).")
    _require(t.init_scale > 0, source, f"training.init_scale = {t.init_scale} must be > 0.")
    _require(t.activation in ("tanh", "relu"), source, f"training.activation = {t.activation!r}; use 'tanh' or 'relu'.")
    _require(t.dtype in ("float32", "float64"), source, f"training.dtype = {t.dtype!r}; use 'float32' or 'float64'.")

    _require(p.threshold > 0, source, f"probe.threshold = {p.threshold} must be > 0.")
    _require(
        0 < p.alpha < 1,
        source,
        f"probe.alpha = {p.alpha} must be in (0, 1); with alpha >= 1 no load is dissipated "
        "and a relaxation need not end.",
    )
    _require(p.topology in TOPOLOGIES, source, f"probe.topology = {p.topology!r}; choose one of {list(TOPOLOGIES)}.")
    _require(
        p.mean_degree >= 2 and p.mean_degree % 2 == 0,
        source,
        f"probe.mean_degree = {p.mean_degree} must be an even integer >= 2.",
    )
    _require(
        0 <= p.rewire_probability <= 1, source, f"probe.rewire_probability = {p.rewire_probability} must be in [0, 1]."
    )
    _require(p.max_sweeps >= 1, source, f"probe.max_sweeps = {p.max_sweeps} must be >= 1.")
    unknown = [name for name in s.topologies if name not in TOPOLOGIES]
    _require(
        not unknown, source, f"synthetic.topologies has unknown name(s) {unknown}; choose from {list(TOPOLOGIES)}."
    )
    _require(
        config.sweep.seeds_per_shard >= 1,
        source,
        f"sweep.seeds_per_shard = {config.sweep.seeds_per_shard} must be >= 1.",
    )
