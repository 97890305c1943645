"""``mobilenet_v2``: MobileNetV2 (Sandler et al., 2018), inverted residuals with linear
bottlenecks.

A block expands its input with a 1x1 conv to t times its channels (none when t = 1), filters
each channel alone with a 3x3 depthwise conv (groups = channels; the stride is here), and
projects back with a 1x1 conv and norm but no activation (the linear bottleneck). It adds its
input when its stride is 1 and its channels do not change. Stages of such blocks follow the
paper's table (``expansions`` t, ``channels`` c, ``repeats`` n, ``strides`` s of each stage's
first block); then a 1x1 conv to ``last_channels`` (1280) – norm – act, global average pool,
dropout 0.2 and the classifier. The activation defaults to ReLU6 (``act=relu6``). Convs have a
bias only where no mean-subtracting norm follows (none with the default batch norm).

The width multiplier rounds every width to a multiple of 8 (never below 8 nor 10% under the
product), as the paper's reference code; the last conv keeps its 1280 channels for
multipliers under 1.

Stems (``model.stem``): ``imagenet``, the paper's 3x3 stride-2 conv of 32 channels for 224x224
(total stride 32); ``cifar``, that conv at stride 1 and the first stride-2 stage (24 channels)
at stride 1 too, for 32x32 (total stride 8, as ResNet's and DenseNet's CIFAR stems).

Parameters: 3,504,872 with ``stem=imagenet`` and 1000 classes (torchvision's count);
2,236,682 with ``stem=cifar`` and 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import Stem, conv_norm_relu
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.linear import Linear
from cnnlab.ops.pool import GlobalAvgPool
from cnnlab.ops.structure import Residual, Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class MobileNetV2Config(ModelConfig):
    name: str = "mobilenet_v2"
    stem: Stem = Stem.cifar
    stem_channels: int = bounded(32, ge=1)
    # The stages of inverted residuals, one entry each (the paper's table 2: t, c, n, s).
    expansions: list[int] = bounded_list(lambda: [1, 6, 6, 6, 6, 6, 6], ge=1)
    channels: list[int] = bounded_list(lambda: [16, 24, 32, 64, 96, 160, 320], ge=1)
    repeats: list[int] = bounded_list(lambda: [1, 2, 3, 4, 3, 3, 1], ge=1)
    strides: list[int] = bounded_list(lambda: [1, 2, 2, 2, 1, 2, 1], ge=1)
    last_channels: int = bounded(1280, ge=1)
    dropout: float = bounded(0.2, ge=0, lt=1)

    @staticmethod
    def rule(cfg: MobileNetV2Config) -> str | None:
        lengths = {len(cfg.expansions), len(cfg.channels), len(cfg.repeats), len(cfg.strides)}
        if len(lengths) != 1:
            return (
                "expansions, model.channels, model.repeats and model.strides must have the "
                "same length"
            )
        return None


def divisible(channels: float, divisor: int = 8) -> int:
    """``channels`` rounded to the nearest multiple of ``divisor``, at least ``divisor`` and
    never more than 10% below ``channels`` (the paper's reference code)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def inverted_residual(
    in_channels: int,
    out_channels: int,
    stride: int,
    expansion: int,
    norm: NormConfig | None,
    act: ActConfig | None = None,
) -> Node:
    """1x1 expand – norm – act (if ``expansion`` > 1), 3x3 depthwise(stride) – norm – act,
    1x1 project – norm; plus x where stride is 1 and the channels stay.

    Shape:
        x: (N, in_channels, H, W) -> out: (N, out_channels, Ho, Wo), ``Ho = 1 + (H - 1) //
        stride``; inside, ``round(in_channels * expansion)`` channels.
    """
    hidden = round(in_channels * expansion)
    body: list[tuple[str, Node]] = []
    if expansion != 1:
        body += conv_norm_relu("_expand", hidden, 1, norm, act=act)
    body += conv_norm_relu("_dw", hidden, 3, norm, stride, 1, act=act, groups=hidden)
    body += conv_norm_relu("_project", out_channels, 1, norm, relu=False)
    if stride == 1 and in_channels == out_channels:
        return Residual(Sequential(tuple(body)))
    return Sequential(tuple(body))


def build(
    cfg: MobileNetV2Config,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """The network: ``conv_stem``, ``stage1``..``stage7`` of inverted residuals, ``conv_last``,
    global pool, dropout, ``fc``. Widths times ``width``, rounded by :func:`divisible`.

    Shape:
        x: (N, C, H, W) -> logits: (N, num_classes). Each stride-2 conv maps H to
        ``1 + (H - 1) // 2`` (likewise W): 224 -> 7 with ``stem=imagenet``, 32 -> 4 with
        ``cifar``.
    """
    strides = list(cfg.strides)
    stem_stride = 2
    if cfg.stem == "cifar":
        stem_stride = 1
        if 2 in strides:  # the early downsampling: the first stride-2 stage runs at stride 1
            strides[strides.index(2)] = 1
    channels = divisible(cfg.stem_channels * width)
    children: list[tuple[str, Node]] = list(
        conv_norm_relu("_stem", channels, 3, norm, stem_stride, 1, act=act)
    )
    stages = zip(cfg.expansions, cfg.channels, cfg.repeats, strides, strict=True)
    for i, (t, c, n, s) in enumerate(stages, start=1):
        out = divisible(c * width)
        blocks: list[tuple[str, Node]] = []
        for j in range(n):
            blocks.append(
                (str(j), inverted_residual(channels, out, s if j == 0 else 1, t, norm, act))
            )
            channels = out
        children.append((f"stage{i}", Sequential(tuple(blocks))))
    last = divisible(cfg.last_channels * max(1.0, width))
    children += [
        *conv_norm_relu("_last", last, 1, norm, act=act),
        ("pool", GlobalAvgPool()),
        ("drop", Dropout(cfg.dropout)),
        ("fc", Linear(cfg.num_classes)),
    ]
    return Sequential(tuple(children))
