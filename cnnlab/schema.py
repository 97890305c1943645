"""Config schemas: a misspelt key or a value of the wrong type is an error, not a default.

Each command's primary config (``conf/<command>.yaml``) extends ``<command>_schema``, and each
option of a config group extends its own (``conf/norm/batch.yaml`` extends ``batch_schema``),
the pattern Hydra documents for schemas of config groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# -- groups ------------------------------------------------------------------------------------


@dataclass
class TrainerConfig:
    seed: int = 0
    threads: int | None = None


@dataclass
class LayerChoice:
    name: str = "all"


@dataclass
class DataConfig:
    name: str = "shapes"
    shape: list[int] = field(default_factory=lambda: [3, 32, 32])  # (C, H, W) of one sample
    num_classes: int = 10


@dataclass
class InitConfig:
    name: str = "kaiming"
    distribution: str = "normal"


@dataclass
class NoNormConfig:
    name: str = "none"


@dataclass
class BatchNormConfig:
    name: str = "batch"
    eps: float = 1e-5
    momentum: float = 0.1
    backward: str = "fused"


@dataclass
class LayerNormConfig:
    name: str = "layer"
    eps: float = 1e-5


@dataclass
class GroupNormConfig:
    name: str = "group"
    groups: int = 2
    eps: float = 1e-5


@dataclass
class LRNConfig:
    name: str = "lrn"
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


NORM_SCHEMAS = {
    "none": NoNormConfig,
    "batch": BatchNormConfig,
    "layer": LayerNormConfig,
    "group": GroupNormConfig,
    "lrn": LRNConfig,
}

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


COMMANDS: dict[str, type] = {"gradcheck": GradcheckConfig, "summary": SummaryConfig}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from cnnlab.models import MODELS

    store = ConfigStore.instance()
    for command, schema in COMMANDS.items():
        store.store(name=f"{command}_schema", node=schema)
    for name, model in MODELS.items():
        store.store(group="model", name=f"{name}_schema", node=model.schema)
    for name, schema in NORM_SCHEMAS.items():
        store.store(group="norm", name=f"{name}_schema", node=schema)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="init", name="init_schema", node=InitConfig)
