"""``nin``: Network in Network (Lin, Chen and Yan, 2014), as the authors' Caffe models.

An mlpconv block is a conv followed by two 1x1 convs (the "micro network" slid over the map),
each conv – norm – act; the last block's last 1x1 conv has K filters, one map per class,
and a global average pool of those maps gives the logits (no linear layer). Norm slots follow
every conv (``norm=none`` by default, as the paper).

``model.stem``:

- ``cifar`` (default), for 32x32: mlpconv 192@5x5 pad 2, 160, 96 – max pool 3x3 s2 – dropout;
  mlpconv 192@5x5 pad 2, 192, 192 – average pool 3x3 s2 – dropout; mlpconv 192@3x3 pad 1, 192,
  K – global average pool (966,986 parameters with 10 classes; 32 -> 16 -> 8 before the last
  pool).
- ``imagenet``, for 224x224: mlpconv 96@11x11 stride 4, 96, 96 – max pool; mlpconv 256@5x5
  pad 2, 256, 256 – max pool; mlpconv 384@3x3 pad 1, 384, 384 – max pool – dropout; mlpconv
  1024@3x3 pad 1, 1024, K – global average pool (7,595,176 parameters with 1000 classes;
  224 -> 54 -> 27 -> 13 -> 6).

The pools are 3x3 stride 2 with ``ceil_mode`` (Caffe's rounding, which these sizes assume).

Shape:
    x: (N, 3, H, W) with H, W >= 4 (cifar; imagenet 39) -> logits: (N, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import Stem, conv_norm_relu, scaled
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import Layer, Node
from cnnlab.schema import ModelConfig, bounded

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class NiNConfig(ModelConfig):
    name: str = "nin"
    stem: Stem = Stem.cifar
    dropout: float = bounded(0.5, ge=0, lt=1)


# Per mlpconv block: (filters, kernel, stride, pad) of its first conv, the two 1x1 convs' widths
# (None: K, the classes), the pool after it (None: the global average pool that ends the net)
# and whether dropout follows.
_MAX = MaxPool2d(3, 2, ceil_mode=True)
Plan = tuple[tuple[int, int, int, int], tuple[int, int | None], Layer | None, bool]
PLANS: dict[str, tuple[Plan, ...]] = {
    "cifar": (
        ((192, 5, 1, 2), (160, 96), _MAX, True),
        ((192, 5, 1, 2), (192, 192), AvgPool2d(3, 2, ceil_mode=True), True),
        ((192, 3, 1, 1), (192, None), None, False),
    ),
    "imagenet": (
        ((96, 11, 4, 0), (96, 96), _MAX, False),
        ((256, 5, 1, 2), (256, 256), _MAX, False),
        ((384, 3, 1, 1), (384, 384), _MAX, True),
        ((1024, 3, 1, 1), (1024, None), None, False),
    ),
}


def build(
    cfg: NiNConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """Blocks ``mlpconv<b>`` (convs ``conv1``–``conv3``), then ``pool<b>``, ``drop<b>``."""
    children: list[tuple[str, Node]] = []
    for b, ((filters, kernel, stride, pad), ones, pool, drop) in enumerate(
        PLANS[cfg.stem], start=1
    ):
        convs = conv_norm_relu("1", scaled(filters, width), kernel, norm, stride, pad, act=act)
        for i, w in enumerate(ones, start=2):
            out = cfg.num_classes if w is None else scaled(w, width)
            convs += conv_norm_relu(str(i), out, 1, norm, act=act)
        children.append((f"mlpconv{b}", Sequential(tuple(convs))))
        children.append((f"pool{b}", GlobalAvgPool() if pool is None else pool))
        if drop:
            children.append((f"drop{b}", Dropout(cfg.dropout)))
    return Sequential(tuple(children))
