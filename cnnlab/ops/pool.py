"""Pooling: the ``maxpool``, ``avgpool`` and ``global_avgpool`` layer kinds."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.kernels.choices import Ties
from cnnlab.kernels.geometry import IntPair, pair, pool_geometry
from cnnlab.ops.cases import distinct
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer, Shape, image


@dataclass(frozen=True)
class MaxPool2d(Layer):
    """Max pooling over ``kernel`` windows, padded with -inf; stride defaults to the kernel.

    ``ties="first"`` sends a window's gradient to its first maximum in row-major order (as
    PyTorch), ``"all"`` to every maximum.

    Shape:
        x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``Ho = 1 + (H + 2*ph - kh) // sh``; leftover
        rows and columns are ignored.
    """

    kernel: IntPair
    stride: IntPair | None = None
    pad: IntPair = 0
    ties: Ties = Ties.first

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("MaxPool2d", shape)
        *_, (Ho, Wo) = pool_geometry("maxpool2d", (1, C, H, W), self.kernel, self.stride, self.pad)
        return (C, Ho, Wo)

    def describe(self) -> str:
        kh, kw = pair(self.kernel)
        return f"MaxPool2d {kh}x{kw} s{pair(self.stride or self.kernel)[0]} p{pair(self.pad)[0]}"


@dataclass(frozen=True)
class AvgPool2d(Layer):
    """Average pooling, padding counted as zeros; the gradient is spread evenly, dout/(kh*kw).

    Shape:
        x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``Ho = 1 + (H + 2*ph - kh) // sh``.
    """

    kernel: IntPair
    stride: IntPair | None = None
    pad: IntPair = 0

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("AvgPool2d", shape)
        *_, (Ho, Wo) = pool_geometry("avgpool2d", (1, C, H, W), self.kernel, self.stride, self.pad)
        return (C, Ho, Wo)


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Mean over the whole feature map.

    Shape:
        x: (N, C, H, W) -> out: (N, C).
    """

    def out_shape(self, shape: Shape) -> Shape:
        return (image("GlobalAvgPool", shape)[0],)


MAXPOOL = register(
    LayerKind(
        "maxpool",
        MaxPool2d,
        "maxpool2d",
        options=("kernel", "stride", "pad", "ties"),
        checks=(
            Check("2x2, stride 2, ties first", MaxPool2d(2), (2, 3, 6, 6), distinct),
            Check("3x3, stride 2, pad 1 (overlapping)", MaxPool2d(3, 2, 1), (2, 2, 7, 7), distinct),
            Check(
                "2x3, stride (1,2), ties all",
                MaxPool2d((2, 3), (1, 2), 0, "all"),
                (1, 2, 5, 7),
                distinct,
            ),
        ),
        bench=(Bench("maxpool", MaxPool2d(2, 2), (64, 32, 16, 16)),),
    )
)

AVGPOOL = register(
    LayerKind(
        "avgpool",
        AvgPool2d,
        "avgpool2d",
        options=("kernel", "stride", "pad"),
        checks=(
            Check("2x2, stride 2", AvgPool2d(2), (2, 3, 6, 6)),
            Check("3x3, stride 2, pad 1", AvgPool2d(3, 2, 1), (2, 2, 7, 7)),
        ),
        bench=(Bench("avgpool", AvgPool2d(2, 2), (64, 32, 16, 16)),),
    )
)

GLOBAL_AVGPOOL = register(
    LayerKind(
        "global_avgpool",
        GlobalAvgPool,
        "global_avgpool",
        checks=(Check("5x4", GlobalAvgPool(), (2, 3, 5, 4)),),
        bench=(Bench("global_avgpool", GlobalAvgPool(), (64, 32, 16, 16)),),
    )
)
