"""``zfnet``: ZFNet (Zeiler and Fergus, 2013), AlexNet with a smaller first conv and dense
convs 3–5.

Convs 1 and 2 are each conv – act – max pool 3x3 stride 2 – norm (LRN by default, the paper's
contrast normalisation across maps; the slot follows the pool, so those convs keep their bias),
convs 3–5 3x3 pad 1 – act, then a max pool, and the classifier linear 4096 – act – dropout –
linear 4096 – act – dropout – linear K. The pools round up (``ceil_mode``, Caffe's rounding).
Filters 96, 256, 384, 384, 256 (``model.filters``).

``model.stem``:

- ``imagenet``, the paper's network for 224x224: conv1 7x7 stride 2 pad 1 (224 -> 110, pool
  -> 55), conv2 5x5 stride 2 (-> 26, pool -> 13), pool after conv5 -> 6x6 (62,357,608
  parameters with 1000 classes).
- ``cifar`` (default), for 32x32: conv1 3x3 stride 1 pad 1 and conv2 5x5 stride 1 pad 2, so
  that only the three pools shrink the map, 32 -> 16 -> 8 -> 4; the classifier the paper's,
  on 256x4x4 = 4096 features (37,318,538 parameters with 10 classes).

Shape:
    x: (N, 3, H, W) with H, W >= 8 (cifar; imagenet 47) -> logits: (N, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import Stem, act_layer, conv_norm_relu, norm_layer, scaled
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class ZFNetConfig(ModelConfig):
    name: str = "zfnet"
    stem: Stem = Stem.cifar
    filters: list[int] = bounded_list(lambda: [96, 256, 384, 384, 256], ge=1, length=5)
    hidden: list[int] = bounded_list(lambda: [4096, 4096], ge=1, length=2)
    dropout: float = bounded(0.5, ge=0, lt=1)


# (kernel, stride, pad) of conv1 and conv2 per stem.
FIRST_CONVS = {"imagenet": ((7, 2, 1), (5, 2, 0)), "cifar": ((3, 1, 1), (5, 1, 2))}


def build(
    cfg: ZFNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    f = [scaled(n, width) for n in cfg.filters]
    children: list[tuple[str, Node]] = []
    for i, (kernel, stride, pad) in enumerate(FIRST_CONVS[cfg.stem], start=1):
        children += conv_norm_relu(str(i), f[i - 1], kernel, None, stride, pad, act=act)
        children.append((f"pool{i}", MaxPool2d(3, 2, ceil_mode=True)))
        slot = norm_layer(norm)
        if slot is not None:
            children.append((f"norm{i}", slot))
    for i in (3, 4, 5):
        children += conv_norm_relu(str(i), f[i - 1], 3, None, pad=1, act=act)
    children += [("pool5", MaxPool2d(3, 2, ceil_mode=True)), ("flatten", Flatten())]
    kind, layer = act_layer(act)
    for i, hidden in ((6, cfg.hidden[0]), (7, cfg.hidden[1])):
        children += [
            (f"fc{i}", Linear(scaled(hidden, width))),
            (f"{kind}{i}", layer),
            (f"drop{i}", Dropout(cfg.dropout)),
        ]
    children.append(("fc8", Linear(cfg.num_classes)))
    return Sequential(tuple(children))
