"""``alexnet_lite``: AlexNet's pattern scaled for 32x32 inputs.

Twice conv – ReLU – maxpool 3x3 s2 – norm (LRN by default, as AlexNet), then three 3x3 convs,
a max pool, and two dropout – linear – ReLU layers before the classifier. Widths in config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import act_layer, conv_norm_relu, norm_layer, scaled
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class AlexNetConfig(ModelConfig):
    name: str = "alexnet_lite"
    filters: list[int] = bounded_list(lambda: [64, 192, 384, 256, 256], ge=1, length=5)
    hidden: list[int] = bounded_list(lambda: [1024, 1024], ge=1, length=2)
    dropout: float = bounded(0.5, ge=0, lt=1)


def build(
    cfg: AlexNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """conv1 5x5, conv2 5x5 (pad 2), conv3-5 3x3 (pad 1); pools 3x3 stride 2 pad 1."""
    f = [scaled(n, width) for n in cfg.filters]
    h = [scaled(n, width) for n in cfg.hidden]
    kind, layer = act_layer(act)
    children: list[tuple[str, Node]] = []
    for i, kernel in ((1, 5), (2, 5)):
        # The norm comes after the pool here, not after the conv, so the conv keeps its bias.
        children += conv_norm_relu(str(i), f[i - 1], kernel, None, pad=kernel // 2, act=act)
        children.append((f"pool{i}", MaxPool2d(3, 2, 1)))
        slot = norm_layer(norm)
        if slot is not None:
            children.append((f"norm{i}", slot))
    for i in (3, 4, 5):
        children += conv_norm_relu(str(i), f[i - 1], 3, None, pad=1, act=act)
    children += [("pool5", MaxPool2d(3, 2, 1)), ("flatten", Flatten())]
    for i in (1, 2):
        children += [
            (f"drop{i}", Dropout(cfg.dropout)),
            (f"fc{i}", Linear(h[i - 1])),
            (f"{kind}_fc{i}", layer),
        ]
    children.append(("fc3", Linear(cfg.num_classes)))
    return Sequential(tuple(children))
