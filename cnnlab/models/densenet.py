"""``densenet121``: DenseNet-BC-121 (Huang et al., 2017), growth 32, dense blocks [6, 12, 24, 16].

A dense layer is pre-activated, norm – act – conv1x1 (``bn_size`` x growth channels) – norm –
act – conv3x3 (growth channels), and its output is stacked onto its input along channels
(:class:`Concat`), so layer i of a block sees the block's input and every earlier layer's
output. Between blocks a transition, norm – act – conv1x1 – avgpool 2x2 stride 2, keeps
``compression`` of the channels (half: the "C" of BC) and halves H and W. After the last block:
norm – act – global average pool – linear. Every conv follows its norm rather than preceding
it, and has no bias, whatever the norm (the paper's).

Stems (``model.stem``): ``cifar``, a 3x3 stride-1 conv (``init_features`` channels) – norm –
act for 32x32 inputs; ``imagenet``, the paper's 7x7 stride-2 pad-3 conv – norm – act and 3x3
stride-2 pad-1 max pool for 224x224.

Parameters: 7,978,856 with ``stem=imagenet`` and 1000 classes (torchvision's count);
6,956,426 with ``stem=cifar`` and 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import Stem, act_layer, conv_norm_relu, norm_layer, scaled
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.linear import Linear
from cnnlab.ops.pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from cnnlab.ops.structure import Concat, Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class DenseNetConfig(ModelConfig):
    name: str = "densenet121"
    stem: Stem = Stem.cifar
    growth: int = bounded(32, ge=1)  # k: channels each dense layer adds
    blocks: list[int] = bounded_list(lambda: [6, 12, 24, 16], ge=1)  # dense layers per block
    init_features: int = bounded(64, ge=1)  # the stem conv's channels
    bn_size: int = bounded(4, ge=1)  # a dense layer's 1x1 conv gives bn_size * k channels
    compression: float = bounded(0.5, gt=0)  # share of channels a transition keeps, <= 1

    @staticmethod
    def rule(cfg: DenseNetConfig) -> str | None:
        if cfg.compression > 1:
            return f"compression must be in (0, 1], got {cfg.compression}"
        return None


def norm_act_conv(
    name: str,
    out_channels: int,
    kernel: int,
    norm: NormConfig | None,
    act: ActConfig | None,
    pad: int = 0,
) -> list[tuple[str, Node]]:
    """``norm<name>`` (if any) – ``<act><name>`` – ``conv<name>`` (stride 1, no bias): the
    pre-activated conv of DenseNet's layers and transitions."""
    out: list[tuple[str, Node]] = []
    slot = None if norm is None else norm_layer(norm)
    if slot is not None:
        out.append((f"norm{name}", slot))
    kind, layer = act_layer(act)
    out += [(f"{kind}{name}", layer), (f"conv{name}", Conv2d(out_channels, kernel, 1, pad, False))]
    return out


def dense_layer(
    growth: int, bn_size: int, norm: NormConfig | None, act: ActConfig | None
) -> Concat:
    """``concat(x, f(x))``, f = norm – act – conv1x1 (bn_size*growth) – norm – act – conv3x3.

    Shape:
        x: (N, C, H, W) -> out: (N, C + growth, H, W).
    """
    new = [
        *norm_act_conv("1", bn_size * growth, 1, norm, act),
        *norm_act_conv("2", growth, 3, norm, act, pad=1),
    ]
    return Concat((("x", None), ("new", Sequential(tuple(new)))))


def build(
    cfg: DenseNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """The network: stem, ``block1`` – ``transition1`` – ... – ``block4``, ``norm5`` – act –
    global pool – ``fc``. ``growth`` and ``init_features`` are scaled by ``width``.

    Shape:
        x: (N, C, H, W) -> logits: (N, num_classes). Block i ends with
        ``c_{i-1} + blocks[i] * growth`` channels (c_0 = init_features), and transition i
        keeps ``floor(compression * that)``. ``stem=cifar`` keeps H, W; ``imagenet`` halves
        them twice (``Ho = 1 + (H - 1) // 2`` each); each transition halves them again
        (``Ho = H // 2``), so the default stem needs H, W >= 8.
    """
    growth = scaled(cfg.growth, width)
    channels = scaled(cfg.init_features, width)
    if cfg.stem == "cifar":
        stem = conv_norm_relu("0", channels, 3, norm, 1, 1, bias=False, act=act)
    else:
        stem = [
            *conv_norm_relu("0", channels, 7, norm, 2, 3, bias=False, act=act),
            ("pool0", MaxPool2d(3, 2, 1)),
        ]
    children: list[tuple[str, Node]] = list(stem)
    for i, n in enumerate(cfg.blocks, start=1):
        layers = tuple(
            (f"layer{j}", dense_layer(growth, cfg.bn_size, norm, act)) for j in range(1, n + 1)
        )
        children.append((f"block{i}", Sequential(layers)))
        channels += n * growth
        if i < len(cfg.blocks):
            channels = max(1, int(channels * cfg.compression))
            transition = [*norm_act_conv("", channels, 1, norm, act), ("pool", AvgPool2d(2, 2))]
            children.append((f"transition{i}", Sequential(tuple(transition))))
    slot = norm_layer(norm)
    if slot is not None:
        children.append(("norm5", slot))
    kind, layer = act_layer(act)
    children += [(f"{kind}5", layer), ("pool", GlobalAvgPool()), ("fc", Linear(cfg.num_classes))]
    return Sequential(tuple(children))
