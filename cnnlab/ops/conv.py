"""Convolution: the ``conv`` layer kind."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnlab.errors import ShapeError
from cnnlab.kernels.geometry import IntPair, conv_geometry, pair
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

    Shape:
        x: (N, C, H, W) -> out: (N, F, Ho, Wo), ``Ho = 1 + (H + 2*ph - HH) // sh``, likewise Wo.

    Attributes:
        w: (F, C, HH, WW); b: (F,).
    """

    out_channels: int
    kernel: IntPair
    stride: IntPair = 1
    pad: IntPair = 0
    bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("Conv2d", shape)
        Ho, Wo = conv_geometry((1, C, H, W), self.weight_shape(C), None, self.stride, self.pad)
        return (self.out_channels, Ho, Wo)

    def weight_shape(self, C: int) -> Shape:
        return (self.out_channels, C, *pair(self.kernel, "kernel"))

    def params(self, shape: Shape) -> list[ParamSpec]:
        specs = [ParamSpec("w", self.weight_shape(shape[0]), "weight")]
        return specs + ([ParamSpec("b", (self.out_channels,), "bias")] if self.bias else [])

    def flops(self, shape: Shape) -> int:
        F, Ho, Wo = self.out_shape(shape)
        return 2 * math.prod(self.weight_shape(shape[0])[1:]) * F * Ho * Wo

    def describe(self) -> str:
        kh, kw = pair(self.kernel)
        (sh, sw), (ph, pw) = pair(self.stride), pair(self.pad)
        s = f"s{sh}" if sh == sw else f"s{sh},{sw}"
        p = f"p{ph}" if ph == pw else f"p{ph},{pw}"
        return f"Conv2d {self.out_channels}@{kh}x{kw} {s} {p}" + ("" if self.bias else " no bias")


def _from_spec(spec: dict[str, object], x: tuple[int, ...]) -> Conv2d:
    """A ``bench.cases`` entry: ``w: [F, C, HH, WW]`` (C must be x's), ``stride``, ``pad``,
    ``bias``."""
    w = [int(n) for n in spec.pop("w")]  # type: ignore[attr-defined]
    if len(w) != 4 or w[1] != x[1]:
        raise ShapeError(f"w {w} must be (F, C, HH, WW) with C = {x[1]}, x's channels")
    return Conv2d(w[0], (w[2], w[3]), **spec)  # type: ignore[arg-type]


CONV = register(
    LayerKind(
        "conv",
        Conv2d,
        "conv2d",
        params=("w", "b"),
        options=("stride", "pad"),
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
        ),
        bench=(Bench("conv", Conv2d(32, 3, 1, 1), (64, 32, 16, 16)),),
        from_spec=_from_spec,
    )
)
