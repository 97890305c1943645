"""The ResNet family, one builder: ``resnet18``, ``resnet34``, ``resnet50``, ``resnext50_32x4d``
and ``se_resnet18``.

Four stages of residual blocks at widths 64–128–256–512; every stage after the first starts
with a stride-2 block. A block whose stride or channels change has a 1x1 conv + norm shortcut
(stride 2 on the conv), the others the identity; the activation follows the sum. Convs have no
bias. Blocks (``model.block``):

- ``basic`` (ResNet-18/34): conv3x3(stride) – norm – act – conv3x3 – norm; out = width.
- ``bottleneck`` (ResNet-50): conv1x1 – norm – act – conv3x3(stride) – norm – act – conv1x1 –
  norm; out = 4 x width. The stride is on the 3x3, as torchvision's (ResNet "v1.5"). The 3x3
  has ``groups`` groups of ``width * width_per_group // 64`` channels each: one group as wide
  as the stage for ResNet-50 (64 per group at width 64), 32 groups of 4 for ResNeXt-50 32x4d.
- ``se_reduction`` r (SE-ResNet): the body's output scaled per channel by squeeze-and-
  excitation (global pool – linear C/r – act – linear C – sigmoid) before the shortcut's sum.

Stems (``model.stem``): ``cifar``, a 3x3 stride-1 conv and no max pool, for 32x32 inputs;
``imagenet``, the paper's 7x7 stride-2 pad-3 conv and 3x3 stride-2 pad-1 max pool for 224x224.

Parameters, ``stem=imagenet`` with 1000 classes (torchvision's counts) / ``stem=cifar`` with 10:

================  ==========================  ==========
model             imagenet, 1000 classes      cifar, 10
================  ==========================  ==========
resnet18          11,689,512                  11,173,962
resnet34          21,797,672                  21,282,122
resnet50          25,557,032                  23,520,842
resnext50_32x4d   25,028,904                  22,992,714
se_resnet18       11,778,592                  11,263,042
================  ==========================  ==========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.choice import Choice
from cnnlab.models.blocks import Stem, act_layer, conv_norm_relu, scaled
from cnnlab.ops.activation import Sigmoid
from cnnlab.ops.linear import Linear
from cnnlab.ops.pool import GlobalAvgPool, MaxPool2d
from cnnlab.ops.structure import ChannelGate, Residual, Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


class Block(Choice):
    """A stage's residual block: ``basic`` two 3x3 convs (ResNet-18/34); ``bottleneck`` 1x1 –
    3x3 – 1x1 with four times the stage's width out (ResNet-50, ResNeXt)."""

    basic = "basic"
    bottleneck = "bottleneck"


# Output channels of a block per unit of its stage's width.
EXPANSION = {Block.basic: 1, Block.bottleneck: 4}


@dataclass
class ResNetConfig(ModelConfig):
    name: str = "resnet18"
    stem: Stem = Stem.cifar
    block: Block = Block.basic
    widths: list[int] = bounded_list(lambda: [64, 128, 256, 512], ge=1)
    blocks: list[int] = bounded_list(lambda: [2, 2, 2, 2], ge=1)
    # Bottleneck blocks: the 3x3 conv's groups (ResNeXt's cardinality) and each group's
    # channels per 64 of the stage's width (64 with 1 group: the 3x3 as wide as the stage).
    groups: int = bounded(1, ge=1)
    width_per_group: int = bounded(64, ge=1)
    se_reduction: int | None = bounded(None, ge=1)  # squeeze-and-excitation's r; None: no SE

    @staticmethod
    def rule(cfg: ResNetConfig) -> str | None:
        if len(cfg.widths) != len(cfg.blocks):
            return "widths and model.blocks must have the same length"
        if cfg.block == Block.basic and (cfg.groups, cfg.width_per_group) != (1, 64):
            return (
                "groups and model.width_per_group shape bottleneck blocks: give "
                "model.block=bottleneck, or groups 1 and width_per_group 64"
            )
        return None


@dataclass
class ResNet34Config(ResNetConfig):
    name: str = "resnet34"
    blocks: list[int] = bounded_list(lambda: [3, 4, 6, 3], ge=1)


@dataclass
class ResNet50Config(ResNetConfig):
    name: str = "resnet50"
    block: Block = Block.bottleneck
    blocks: list[int] = bounded_list(lambda: [3, 4, 6, 3], ge=1)


@dataclass
class ResNeXt50Config(ResNet50Config):
    name: str = "resnext50_32x4d"
    groups: int = bounded(32, ge=1)
    width_per_group: int = bounded(4, ge=1)


@dataclass
class SEResNet18Config(ResNetConfig):
    name: str = "se_resnet18"
    se_reduction: int | None = bounded(16, ge=1)


def squeeze_excitation(channels: int, reduction: int, act: ActConfig | None = None) -> ChannelGate:
    """SE: x times sigmoid(linear C(act(linear C/r(global mean of x)))), per channel.

    Shape:
        x: (N, C, H, W) -> out: (N, C, H, W), C = ``channels``; the hidden layer has
        ``max(1, C // reduction)`` units.
    """
    return ChannelGate(
        Sequential(
            (
                ("pool", GlobalAvgPool()),
                ("fc1", Linear(max(1, channels // reduction))),
                act_layer(act),
                ("fc2", Linear(channels)),
                ("sigmoid", Sigmoid()),
            )
        )
    )


def basic_block(
    in_channels: int,
    out_channels: int,
    stride: int,
    norm: NormConfig | None,
    act: ActConfig | None = None,
    se_reduction: int | None = None,
) -> Residual:
    """conv3x3(stride) – norm – act – conv3x3 – norm (– SE), plus the shortcut; act follows
    outside."""
    body: list[tuple[str, Node]] = [
        *conv_norm_relu("1", out_channels, 3, norm, stride, 1, bias=False, act=act),
        *conv_norm_relu("2", out_channels, 3, norm, 1, 1, bias=False, relu=False),
    ]
    return _residual(body, in_channels, out_channels, stride, norm, act, se_reduction)


def bottleneck_block(
    in_channels: int,
    inner: int,
    out_channels: int,
    stride: int,
    norm: NormConfig | None,
    act: ActConfig | None = None,
    groups: int = 1,
    se_reduction: int | None = None,
) -> Residual:
    """conv1x1 – norm – act – conv3x3(stride, groups) – norm – act – conv1x1 – norm (– SE),
    plus the shortcut; act follows outside. ``inner``: the 3x3's channels."""
    body: list[tuple[str, Node]] = [
        *conv_norm_relu("1", inner, 1, norm, 1, 0, bias=False, act=act),
        *conv_norm_relu("2", inner, 3, norm, stride, 1, bias=False, act=act, groups=groups),
        *conv_norm_relu("3", out_channels, 1, norm, 1, 0, bias=False, relu=False),
    ]
    return _residual(body, in_channels, out_channels, stride, norm, act, se_reduction)


def _residual(
    body: list[tuple[str, Node]],
    in_channels: int,
    out_channels: int,
    stride: int,
    norm: NormConfig | None,
    act: ActConfig | None,
    se_reduction: int | None,
) -> Residual:
    """The block: its body (SE appended if asked) and a 1x1 conv + norm shortcut where the
    stride or the channels change."""
    if se_reduction is not None:
        body.append(("se", squeeze_excitation(out_channels, se_reduction, act)))
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = Sequential(
            tuple(conv_norm_relu("", out_channels, 1, norm, stride, 0, bias=False, relu=False))
        )
    return Residual(Sequential(tuple(body)), shortcut)


def build(
    cfg: ResNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """The network: stem, ``layer1``..``layer4`` of blocks, global pool, ``fc``.

    Widths are scaled by ``width``; a bottleneck's 3x3 keeps ``groups`` groups with at least
    one channel each.

    Shape:
        x: (N, C, H, W) -> logits: (N, num_classes). ``stem=cifar`` keeps H, W through
        layer1; ``imagenet`` halves them twice (conv, then pool: ``Ho = 1 + (H - 1) // 2``
        each). Each later stage halves them again (``Ho = 1 + (H - 1) // 2``).
    """
    widths = [scaled(w, width) for w in cfg.widths]
    expansion = EXPANSION[cfg.block]
    if cfg.stem == "cifar":
        stem = conv_norm_relu("1", widths[0], 3, norm, 1, 1, bias=False, act=act)
    else:
        stem = [
            *conv_norm_relu("1", widths[0], 7, norm, 2, 3, bias=False, act=act),
            ("pool1", MaxPool2d(3, 2, 1)),
        ]
    children: list[tuple[str, Node]] = list(stem)
    channels = widths[0]
    for stage, (w, n) in enumerate(zip(widths, cfg.blocks, strict=True), start=1):
        out = w * expansion
        blocks: list[tuple[str, Node]] = []
        for i in range(n):
            stride = 2 if i == 0 and stage > 1 else 1
            if cfg.block == Block.basic:
                block = basic_block(channels, out, stride, norm, act, cfg.se_reduction)
            else:
                inner = cfg.groups * max(1, w * cfg.width_per_group // 64)
                block = bottleneck_block(
                    channels, inner, out, stride, norm, act, cfg.groups, cfg.se_reduction
                )
            blocks.append((str(i), Sequential((("block", block), act_layer(act)))))
            channels = out
        children.append((f"layer{stage}", Sequential(tuple(blocks))))
    children += [("pool", GlobalAvgPool()), ("fc", Linear(cfg.num_classes))]
    return Sequential(tuple(children))
