"""``threelayer``: conv 32@7x7 pad 3 – norm – ReLU – maxpool 2 – linear 100 – ReLU – linear K."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.models.blocks import conv_norm_relu, scaled
from cnnlab.nn import layers as L


@dataclass
class ThreeLayerConfig:
    name: str = "threelayer"
    num_classes: int = 10
    filters: int = 32
    kernel: int = 7
    hidden: int = 100


def build(cfg: Any, norm: Any, in_shape: tuple[int, ...], width: float = 1.0) -> L.Sequential:
    """The CS231n three-layer convnet; the conv keeps the spatial size (pad = kernel // 2)."""
    return L.Sequential(
        (
            *conv_norm_relu("1", scaled(cfg.filters, width), cfg.kernel, norm, pad=cfg.kernel // 2),
            ("pool1", L.MaxPool2d(2)),
            ("flatten", L.Flatten()),
            ("fc1", L.Linear(scaled(cfg.hidden, width))),
            ("relu2", L.ReLU()),
            ("fc2", L.Linear(cfg.num_classes)),
        )
    )
