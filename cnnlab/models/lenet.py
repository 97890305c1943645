"""``lenet``: LeNet-5 for inputs up to 32x32.

conv 6@5x5 (pad (32 - H) // 2: 2 on 28x28, 0 on 32x32) – ReLU – maxpool 2 – conv 16@5x5 – ReLU –
maxpool 2 – linear 120 – ReLU – linear 84 – ReLU – linear K. 61,706 parameters on 1x28x28 with
10 classes. Norm slots follow each conv (none by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import act_layer, conv_norm_relu, scaled
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.schema import ModelConfig, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class LeNetConfig(ModelConfig):
    name: str = "lenet"
    filters: list[int] = bounded_list(lambda: [6, 16], ge=1, length=2)
    hidden: list[int] = bounded_list(lambda: [120, 84], ge=1, length=2)


def build(
    cfg: LeNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """LeNet-5; the first conv pads a smaller input up to LeNet's 32x32."""
    kind, layer = act_layer(act)
    pad = max(0, (32 - in_shape[1]) // 2)
    c1, c2 = (scaled(f, width) for f in cfg.filters)
    h1, h2 = (scaled(h, width) for h in cfg.hidden)
    return Sequential(
        (
            *conv_norm_relu("1", c1, 5, norm, pad=pad, act=act),
            ("pool1", MaxPool2d(2)),
            *conv_norm_relu("2", c2, 5, norm, act=act),
            ("pool2", MaxPool2d(2)),
            ("flatten", Flatten()),
            ("fc1", Linear(h1)),
            (f"{kind}3", layer),
            ("fc2", Linear(h2)),
            (f"{kind}4", layer),
            ("fc3", Linear(cfg.num_classes)),
        )
    )
