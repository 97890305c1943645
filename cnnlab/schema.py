"""Config schemas: a misspelt key or a value of the wrong type is an error, not a default.

Each command's primary config (``conf/<command>.yaml``) extends ``<command>_schema``, and each
option of a config group extends its own (``conf/norm/batch.yaml`` extends ``batch_schema``),
the pattern Hydra documents for schemas of config groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, get_type_hints

from omegaconf import MISSING

# -- choices: one list each; Hydra rejects any other value with the list ----------------------


class Dtype(StrEnum):
    """The floating-point type of a run's data, weights and kernels (``trainer.dtype``)."""

    float32 = "float32"
    float64 = "float64"


class Schedule(StrEnum):
    """Learning-rate schedules (``optim.schedule``): constant, step decay, cosine decay."""

    none = "none"
    step = "step"
    cosine = "cosine"


class DataAction(StrEnum):
    """What ``cnnlab data`` does: fetch missing files, or say what is on disk."""

    download = "download"
    info = "info"


# -- groups ------------------------------------------------------------------------------------


@dataclass
class TrainerConfig:
    seed: int = 0
    threads: int | None = None
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 500
    dtype: Dtype = Dtype.float32
    max_steps: int | None = None
    log_every: int = 50
    checkpoint_every_steps: int = 0
    resume: str | None = None
    devices: int = 1  # data-parallel processes (DDP); batch_size is per process
    winograd: bool = True  # im2col: Winograd's algorithm for the 3x3 convs it fits


@dataclass
class BackendConfig:
    name: str = "im2col"


@dataclass
class LayerChoice:
    name: str = "all"


@dataclass
class DataConfig:
    name: str = "shapes"
    shape: list[int] = field(default_factory=lambda: [3, 32, 32])  # (C, H, W) of one sample
    num_classes: int = 10
    root: str | None = None  # folder of the files (None: generated data)
    download: bool = True  # fetch missing files, checksum-verified
    classes: list[int] | None = None  # a subset of class indices, relabelled 0..k-1
    val_fraction: float = 0.1  # share of the training set held out for validation
    limit: int | None = None  # cap on every split
    augment: bool = False  # random crops and flips of training batches
    crop_pad: int = 4
    flip: bool = True
    # Generated data (shapes) only:
    train_size: int | None = None
    test_size: int | None = None
    noise: float | None = None


@dataclass
class InitConfig:
    name: str = "kaiming"
    distribution: str = "normal"


def _norm_schema(name: str, layer: object | None) -> type:
    """The schema of one ``norm=`` option: ``name`` and the fields of the layer it puts in the
    norm slots, with that layer's values as defaults (:data:`cnnlab.ops.norm.NORMS`)."""
    fields: list[tuple[str, type, object]] = [("name", str, name)]
    if layer is not None:
        hints = get_type_hints(type(layer))
        fields += [
            (f.name, hints[f.name], getattr(layer, f.name)) for f in dataclasses.fields(layer)
        ]  # type: ignore[arg-type]
    return dataclasses.make_dataclass(f"{name.capitalize()}NormConfig", fields)


def _norm_node(name: str, layer: object | None) -> object:
    """The config node of one ``norm=`` option, with its layer's values."""
    return _norm_schema(name, layer)()


@dataclass
class OptimConfig:
    """Keys every optimizer has: the base learning rate, L2 weight decay and the schedule."""

    name: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 0.0  # L2: added to the gradient as weight_decay * p, as torch
    schedule: Schedule = Schedule.none
    step_size: int = 10  # step: epochs between drops
    gamma: float = 0.1  # step: factor of each drop
    min_lr: float = 0.0  # cosine: the learning rate at the last step
    warmup_steps: int = 0  # linear warmup from lr/warmup_steps over the first steps


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"


@dataclass
class MomentumConfig(OptimConfig):
    name: str = "momentum"
    lr: float = 0.02
    weight_decay: float = 5e-4
    schedule: Schedule = Schedule.cosine
    warmup_steps: int = 100
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


OPTIM_SCHEMAS = {"sgd": SGDConfig, "momentum": MomentumConfig, "adam": AdamConfig}

# -- commands ----------------------------------------------------------------------------------


@dataclass
class GradcheckSettings:
    step: float = 1e-6
    rtol_numeric: float = 1e-8
    rtol_torch: float = 1e-10
    atol_zero: float = 1e-10
    width_scale: float = 0.125  # model checks: layer widths times this
    image_size: int | None = 16  # model checks: inputs resized to this (None: the data's)
    batch_size: int = 2  # model checks: samples in the input batch
    samples: int = 4  # model checks: coordinates per tensor checked numerically


@dataclass
class GradcheckConfig:
    layer: LayerChoice = field(default_factory=LayerChoice)
    # A list of names or the string "all": OmegaConf has no union of list and str.
    backends: Any = "all"
    gradcheck: GradcheckSettings = field(default_factory=GradcheckSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # Group nodes are typed by their own schemas.
    model: Any = None
    norm: Any = None
    data: Any = None
    init: Any = None


@dataclass
class SummaryConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: Any = None
    norm: Any = None
    data: Any = None


@dataclass
class TrainConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    backend: Any = None
    model: Any = None
    norm: Any = None
    data: Any = None
    init: Any = None
    optim: Any = None


@dataclass
class EvalConfig:
    checkpoint: str = MISSING  # a run directory or a .npz checkpoint
    split: str = "test"
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    backend: Any = None  # evaluate on another backend than the run's


@dataclass
class DataCommandConfig:
    action: DataAction = DataAction.info
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: Any = None


@dataclass
class BenchSettings:
    """``bench.*``: the target's cases (from ``conf/bench/<target>.yaml``) and the harness."""

    target: str = "conv"
    cases: Any = field(default_factory=list)  # dicts: name, layer and the layer's shapes
    runs: int = 5
    warmup: int = 1
    repeats: int = 1
    naive_budget_s: float = 20.0
    naive_probe_batch: int = 2
    rtol: float = 1e-4
    roofline_size: int = 1024
    batch: int | None = None  # replaces every case's batch size


@dataclass
class BenchConfig:
    backends: Any = "all"  # a list of names or "all", as gradcheck's
    bench: BenchSettings = field(default_factory=BenchSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: Any = None
    norm: Any = None
    data: Any = None
    init: Any = None
    optim: Any = None


COMMANDS: dict[str, type] = {
    "gradcheck": GradcheckConfig,
    "summary": SummaryConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    # `cnnlab data`: named apart from the data group's own data_schema.
    "data_command": DataCommandConfig,
    "bench": BenchConfig,
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from cnnlab.data import register_resolvers
    from cnnlab.models import MODELS

    store = ConfigStore.instance()
    register_resolvers()
    for command, schema in COMMANDS.items():
        store.store(name=f"{command}_schema", node=schema)
    for name, model in MODELS.items():
        store.store(group="model", name=f"{name}_schema", node=model.schema)
    for name, schema in OPTIM_SCHEMAS.items():
        store.store(group="optim", name=f"{name}_schema", node=schema)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="init", name="init_schema", node=InitConfig)
    for group, options in stored_groups().items():
        for name, node in options.items():
            store.store(group=group, name=name, node=node())


def stored_groups() -> dict[str, dict[str, Callable[[], object]]]:
    """The config groups whose options are defined in code, not one YAML file each: option
    name -> its config node, for gradcheck's ``layer=`` (the registered layer kinds), ``norm=``
    (cnnlab.ops.norm.NORMS) and ``backend=`` (cnnlab.backends.BACKENDS)."""
    from cnnlab.backends import BACKENDS
    from cnnlab.ops import layer_choices
    from cnnlab.ops.norm import NORMS

    # Factories, not nodes: --help reads only the names.
    return {
        "layer": {name: partial(LayerChoice, name) for name in layer_choices()},
        "norm": {name: partial(_norm_node, name, layer) for name, layer in NORMS.items()},
        "backend": {name: partial(BackendConfig, name) for name in BACKENDS},
    }
