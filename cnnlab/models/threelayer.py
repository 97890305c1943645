"""``threelayer``: conv 32@7x7 pad 3 – norm – ReLU – maxpool 2 – linear 100 – ReLU – linear K."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import act_layer, conv_norm_relu, scaled
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.schema import ModelConfig, bounded

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class ThreeLayerConfig(ModelConfig):
    name: str = "threelayer"
    filters: int = bounded(32, ge=1)
    kernel: int = bounded(7, ge=1)
    hidden: int = bounded(100, ge=1)


def build(
    cfg: ThreeLayerConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """The CS231n three-layer convnet; the conv keeps the spatial size (pad = kernel // 2)."""
    kind, layer = act_layer(act)
    return Sequential(
        (
            *conv_norm_relu(
                "1", scaled(cfg.filters, width), cfg.kernel, norm, pad=cfg.kernel // 2, act=act
            ),
            ("pool1", MaxPool2d(2)),
            ("flatten", Flatten()),
            ("fc1", Linear(scaled(cfg.hidden, width))),
            (f"{kind}2", layer),
            ("fc2", Linear(cfg.num_classes)),
        )
    )
