"""Convolution: the ``conv`` layer kind, and ``conv_relu``, a conv and the ReLU after it fused."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from cnnlab.errors import ShapeError
from cnnlab.kernels.geometry import IntPair, conv_geometry, pair
from cnnlab.ops.activation import ReLU
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer, ParamSpec, Shape, image


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D convolution (cross-correlation, no flip) with ``out_channels`` filters.

    Args:
        out_channels: F, the number of filters.
        kernel: (HH, WW), or one int for a square kernel.
        stride: step between windows, an int or a (sh, sw) pair.
        pad: zeros added on each side of H and W, an int or a (ph, pw) pair.
        bias: whether the layer has a bias (none before a norm that subtracts the mean).
        dilation: spacing of the kernel's taps, an int or a pair (a 3x3 kernel with
            dilation 2 spans 5x5).
        groups: G; the C channels and F filters split into G groups, each filter seeing only
            its group's C/G channels (ResNeXt's grouped convs; depthwise when G = C).

    Shape:
        x: (N, C, H, W) -> out: (N, F, Ho, Wo), ``Ho = 1 + (H + 2*ph - dil_h*(HH - 1) - 1) //
        sh``, likewise Wo.

    Attributes:
        w: (F, C/G, HH, WW); b: (F,).
    """

    out_channels: int
    kernel: IntPair
    stride: IntPair = 1
    pad: IntPair = 0
    bias: bool = True
    dilation: IntPair = 1
    groups: int = 1

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("Conv2d", shape)
        w = self.weight_shape(C)
        geometry = (self.stride, self.pad, self.dilation, self.groups)
        Ho, Wo = conv_geometry((1, C, H, W), w, None, *geometry)
        return (self.out_channels, Ho, Wo)

    def weight_shape(self, C: int) -> Shape:
        return (self.out_channels, C // max(self.groups, 1), *pair(self.kernel, "kernel"))

    def params(self, shape: Shape) -> list[ParamSpec]:
        specs = [ParamSpec("w", self.weight_shape(shape[0]), "weight")]
        return specs + ([ParamSpec("b", (self.out_channels,), "bias")] if self.bias else [])

    def flops(self, shape: Shape) -> int:
        # Each filter's multiply-adds run over its own group's channels only: C/G*HH*WW.
        F, Ho, Wo = self.out_shape(shape)
        return 2 * math.prod(self.weight_shape(shape[0])[1:]) * F * Ho * Wo

    def describe(self) -> str:
        kh, kw = pair(self.kernel)
        (sh, sw), (ph, pw), dil = pair(self.stride), pair(self.pad), pair(self.dilation)
        s = f"s{sh}" if sh == sw else f"s{sh},{sw}"
        p = f"p{ph}" if ph == pw else f"p{ph},{pw}"
        d = "" if dil == (1, 1) else f" d{dil[0]}" if dil[0] == dil[1] else f" d{dil[0]},{dil[1]}"
        g = "" if self.groups == 1 else f" g{self.groups}"
        return f"Conv2d {self.out_channels}@{kh}x{kw} {s} {p}{d}{g}" + (
            "" if self.bias else " no bias"
        )


def _from_spec(spec: dict[str, object], x: tuple[int, ...]) -> Conv2d:
    """A ``bench.cases`` entry: ``w: [F, C/groups, HH, WW]`` (C is x's), ``stride``, ``pad``,
    ``dilation``, ``groups``, ``bias``."""
    w = [int(n) for n in spec.pop("w")]  # type: ignore[attr-defined]
    groups = spec.get("groups", 1)
    if len(w) != 4 or not isinstance(groups, int) or w[1] * groups != x[1]:
        raise ShapeError(
            f"w {w} must be (F, C/groups, HH, WW) with C = {x[1]}, x's channels, "
            f"and groups = {groups}"
        )
    return Conv2d(w[0], (w[2], w[3]), **spec)  # type: ignore[arg-type]


CONV = register(
    LayerKind(
        "conv",
        Conv2d,
        "conv2d",
        params=("w", "b"),
        options=("stride", "pad", "dilation", "groups"),
        skips_dx=True,
        checks=(
            Check("3x3, stride 1, pad 1, bias", Conv2d(4, 3, 1, 1), (2, 3, 6, 5)),
            Check(
                "5x3, stride 2, pad (2,1), no bias",
                Conv2d(3, (5, 3), 2, (2, 1), False),
                (2, 2, 9, 7),
            ),
            Check("1x1, stride (2,1), batch 1", Conv2d(2, 1, (2, 1), 0), (1, 4, 5, 6)),
            Check("3x3, 16 channels, pad 1 (im2col: Winograd)", Conv2d(16, 3, 1, 1), (2, 16, 6, 7)),
            Check("3x3, 2 groups, 4 -> 6 channels", Conv2d(6, 3, 1, 1, groups=2), (2, 4, 5, 6)),
            Check(
                "3x3 depthwise (groups = C = 3), stride 2",
                Conv2d(3, 3, 2, 1, groups=3),
                (2, 3, 7, 6),
            ),
            Check(
                "depthwise, 2 filters per channel, dilation 2",
                Conv2d(6, 3, 1, 2, dilation=2, groups=3),
                (2, 3, 6, 7),
            ),
            Check(
                "3x2, dilation (2,3), stride 2, no bias",
                Conv2d(3, (3, 2), 2, 1, False, (2, 3)),
                (2, 2, 8, 9),
            ),
        ),
        bench=(
            Bench("conv", Conv2d(32, 3, 1, 1), (64, 32, 16, 16)),
            Bench("conv_depthwise", Conv2d(64, 3, 1, 1, False, groups=64), (128, 64, 32, 32)),
            Bench("conv_grouped", Conv2d(128, 3, 1, 1, False, groups=32), (32, 128, 16, 16)),
            Bench("conv_dilated", Conv2d(32, 3, 1, 2, dilation=2), (64, 32, 16, 16)),
        ),
        from_spec=_from_spec,
    )
)


@dataclass(frozen=True)
class ConvReLU(Conv2d):
    """A :class:`Conv2d` followed by ReLU, in one kernel: ``max(conv(x), 0)``.

    Models are written with the two layers; an executor whose kernel set computes this faster
    than the pair (``im2col``: the ReLU and its mask applied to each chunk of output while it
    is in cache, instead of two more passes over memory) runs this in their place
    (:func:`cnnlab.ops.registry.fused`). Same arguments, parameters and FLOPs as the conv.

    Shape:
        x: (N, C, H, W) -> out: (N, F, Ho, Wo), as :class:`Conv2d`.
    """

    def describe(self) -> str:
        return f"{super().describe()} + ReLU"


def _conv_relu(conv: Conv2d, relu: ReLU) -> ConvReLU:
    return ConvReLU(**{f.name: getattr(conv, f.name) for f in dataclasses.fields(conv)})


CONV_RELU = register(
    LayerKind(
        "conv_relu",
        ConvReLU,
        "conv2d_relu",
        params=("w", "b"),
        options=("stride", "pad", "dilation", "groups"),
        skips_dx=True,
        checks=(
            Check("3x3, stride 1, pad 1, bias", ConvReLU(4, 3, 1, 1), (2, 3, 6, 5)),
            Check("5x5, 6 -> 16 channels (im2col: dx folded)", ConvReLU(16, 5), (2, 6, 9, 9)),
            Check(
                "3x3, 6 -> 4 channels (im2col: dx as a conv)", ConvReLU(4, 3, 1, 1), (2, 6, 5, 5)
            ),
            Check("3x3, 16 channels (im2col: Winograd)", ConvReLU(16, 3, 1, 1), (2, 16, 6, 7)),
            Check(
                "3x3 stride 2, 2 groups, no bias",
                ConvReLU(6, 3, 2, 1, False, groups=2),
                (2, 4, 7, 6),
            ),
        ),
        bench=(Bench("conv_relu", ConvReLU(32, 3, 1, 1), (64, 32, 16, 16)),),
        fuses=(Conv2d, ReLU),
        fuse=_conv_relu,
    )
)
