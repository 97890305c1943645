"""``resnet18``: BasicBlocks [2, 2, 2, 2] at widths 64–128–256–512.

Convs have no bias; a stage that changes size or width starts with a stride-2 block whose
shortcut is a 1x1 conv + norm. ``stem=cifar``: 3x3 stride-1 conv, no max pool (11,173,962
parameters for 10 classes). ``stem=imagenet``: torchvision's 7x7 stride-2 pad-3 conv and 3x3
stride-2 pad-1 max pool (11,689,512 parameters with 1000 classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.choice import Choice
from cnnlab.models.blocks import act_layer, conv_norm_relu, scaled
from cnnlab.ops.linear import Linear
from cnnlab.ops.pool import GlobalAvgPool, MaxPool2d
from cnnlab.ops.structure import Residual, Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


class Stem(Choice):
    """The first layers: ``cifar`` a 3x3 stride-1 conv for 32x32 inputs; ``imagenet`` the
    paper's 7x7 stride-2 conv and 3x3 stride-2 max pool for 224x224."""

    cifar = "cifar"
    imagenet = "imagenet"


@dataclass
class ResNetConfig(ModelConfig):
    name: str = "resnet18"
    stem: Stem = Stem.cifar
    widths: list[int] = bounded_list(lambda: [64, 128, 256, 512], ge=1)
    blocks: list[int] = bounded_list(lambda: [2, 2, 2, 2], ge=1)

    @staticmethod
    def rule(cfg: ResNetConfig) -> str | None:
        if len(cfg.widths) != len(cfg.blocks):
            return "widths and model.blocks must have the same length"
        return None


def basic_block(
    in_channels: int,
    out_channels: int,
    stride: int,
    norm: NormConfig | None,
    act: ActConfig | None = None,
) -> Residual:
    """conv3x3(stride) – norm – act – conv3x3 – norm, plus the shortcut; act follows outside."""
    body = Sequential(
        (
            *conv_norm_relu("1", out_channels, 3, norm, stride, 1, bias=False, act=act),
            *conv_norm_relu("2", out_channels, 3, norm, 1, 1, bias=False, relu=False),
        )
    )
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = Sequential(
            tuple(conv_norm_relu("", out_channels, 1, norm, stride, 0, bias=False, relu=False))
        )
    return Residual(body, shortcut)


def build(
    cfg: ResNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    widths = [scaled(w, width) for w in cfg.widths]
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
        blocks: list[tuple[str, Node]] = []
        for i in range(n):
            stride = 2 if i == 0 and stage > 1 else 1
            blocks.append(
                (
                    str(i),
                    Sequential(
                        (
                            ("block", basic_block(channels, w, stride, norm, act)),
                            act_layer(act),
                        )
                    ),
                )
            )
            channels = w
        children.append((f"layer{stage}", Sequential(tuple(blocks))))
    children += [("pool", GlobalAvgPool()), ("fc", Linear(cfg.num_classes))]
    return Sequential(tuple(children))
