"""Pooling: the ``maxpool``, ``avgpool``, ``adaptive_avgpool`` and ``global_avgpool`` layer
kinds."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.kernels.choices import Ties
from cnnlab.kernels.geometry import IntPair, adaptive_geometry, pair, pool_geometry
from cnnlab.ops.cases import distinct
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer, Shape, image


def _window(
    name: str, kernel: IntPair, stride: IntPair | None, pad: IntPair, ceil_mode: bool
) -> str:
    """A pooling layer's label, e.g. ``MaxPool2d 3x3 s2 p1 ceil``."""
    kh, kw = pair(kernel)
    label = f"{name} {kh}x{kw} s{pair(stride or kernel)[0]} p{pair(pad)[0]}"
    return f"{label} ceil" if ceil_mode else label


@dataclass(frozen=True)
class MaxPool2d(Layer):
    """Max pooling over ``kernel`` windows, padded with -inf; stride defaults to the kernel.

    ``ties="first"`` sends a window's gradient to its first maximum in row-major order (as
    PyTorch), ``"all"`` to every maximum.

    Shape:
        x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``Ho = 1 + (H + 2*ph - kh) // sh``; leftover
        rows and columns are ignored. With ``ceil_mode`` (as PyTorch):
        ``Ho = 1 + ceil((H + 2*ph - kh) / sh)``, less one where the last window would start
        in the bottom padding (at or past ``H + ph``); a window running past the padded input
        takes the maximum of the elements inside it. Likewise Wo.
    """

    kernel: IntPair
    stride: IntPair | None = None
    pad: IntPair = 0
    ties: Ties = Ties.first
    ceil_mode: bool = False

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("MaxPool2d", shape)
        *_, (Ho, Wo) = pool_geometry(
            "maxpool2d", (1, C, H, W), self.kernel, self.stride, self.pad, self.ceil_mode
        )
        return (C, Ho, Wo)

    def describe(self) -> str:
        return _window("MaxPool2d", self.kernel, self.stride, self.pad, self.ceil_mode)


@dataclass(frozen=True)
class AvgPool2d(Layer):
    """Average pooling, padding counted as zeros; the gradient is spread evenly, dout/(kh*kw).

    Shape:
        x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``Ho = 1 + (H + 2*ph - kh) // sh``, likewise
        Wo. With ``ceil_mode`` Ho and Wo are rounded up as in :class:`MaxPool2d`, and a window
        running past the padded input is divided by the number of its elements inside it,
        ``(min(i*sh + kh, H + 2*ph) - i*sh) * (likewise for columns)`` (PyTorch's
        ``count_include_pad=True``).
    """

    kernel: IntPair
    stride: IntPair | None = None
    pad: IntPair = 0
    ceil_mode: bool = False

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("AvgPool2d", shape)
        *_, (Ho, Wo) = pool_geometry(
            "avgpool2d", (1, C, H, W), self.kernel, self.stride, self.pad, self.ceil_mode
        )
        return (C, Ho, Wo)

    def describe(self) -> str:
        return _window("AvgPool2d", self.kernel, self.stride, self.pad, self.ceil_mode)


@dataclass(frozen=True)
class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output size, whatever the input's (VGG's classifier input).

    Args:
        output: the output size Ho x Wo, an int or an (h, w) pair, each >= 1; it may exceed
            the input's size.

    Shape:
        x: (N, C, H, W) -> out: (N, C, Ho, Wo). Cell ``(i, j)`` is the mean of rows
        ``floor(i*H/Ho)`` to ``ceil((i+1)*H/Ho)`` (exclusive) and columns
        ``floor(j*W/Wo)`` to ``ceil((j+1)*W/Wo)``, as PyTorch's ``AdaptiveAvgPool2d``; where
        Ho does not divide H, neighbouring windows overlap and differ in size.
    """

    output: IntPair

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = image("AdaptiveAvgPool2d", shape)
        Ho, Wo = adaptive_geometry("adaptive_avgpool2d", (1, C, H, W), self.output)
        return (C, Ho, Wo)

    def describe(self) -> str:
        Ho, Wo = pair(self.output)
        return f"AdaptiveAvgPool2d {Ho}x{Wo}"


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
        options=("kernel", "stride", "pad", "ties", "ceil_mode"),
        checks=(
            Check("2x2, stride 2, ties first", MaxPool2d(2), (2, 3, 6, 6), distinct),
            Check("3x3, stride 2, pad 1 (overlapping)", MaxPool2d(3, 2, 1), (2, 2, 7, 7), distinct),
            Check(
                "2x3, stride (1,2), ties all",
                MaxPool2d((2, 3), (1, 2), 0, "all"),
                (1, 2, 5, 7),
                distinct,
            ),
            Check(
                "3x3, stride 2, ceil_mode, 8x6",
                MaxPool2d(3, 2, ceil_mode=True),
                (2, 2, 8, 6),
                distinct,
            ),
            Check(
                "3x3, stride 2, pad 1, ceil_mode, 6x8",
                MaxPool2d(3, 2, 1, ceil_mode=True),
                (2, 2, 6, 8),
                distinct,
            ),
            Check(
                "2x3, stride 2, ceil_mode, ties all, 5x8",
                MaxPool2d((2, 3), 2, 0, "all", ceil_mode=True),
                (1, 2, 5, 8),
                distinct,
            ),
            Check(
                "2x2, stride 3 (kernel < stride), ceil_mode, 7x8",
                MaxPool2d(2, 3, ceil_mode=True),
                (1, 2, 7, 8),
                distinct,
            ),
        ),
        bench=(
            Bench("maxpool", MaxPool2d(2, 2), (64, 32, 16, 16)),
            Bench("maxpool 3x3/2 ceil", MaxPool2d(3, 2, ceil_mode=True), (64, 32, 16, 16)),
        ),
    )
)

AVGPOOL = register(
    LayerKind(
        "avgpool",
        AvgPool2d,
        "avgpool2d",
        options=("kernel", "stride", "pad", "ceil_mode"),
        checks=(
            Check("2x2, stride 2", AvgPool2d(2), (2, 3, 6, 6)),
            Check("3x3, stride 2, pad 1", AvgPool2d(3, 2, 1), (2, 2, 7, 7)),
            Check("3x3, stride 2, ceil_mode, 8x6", AvgPool2d(3, 2, ceil_mode=True), (2, 2, 8, 6)),
            Check(
                "3x3, stride 2, pad 1, ceil_mode, 6x8",
                AvgPool2d(3, 2, 1, ceil_mode=True),
                (2, 2, 6, 8),
            ),
            Check(
                "2x2, stride 3 (kernel < stride), ceil_mode, 7x8",
                AvgPool2d(2, 3, ceil_mode=True),
                (1, 2, 7, 8),
            ),
        ),
        bench=(
            Bench("avgpool", AvgPool2d(2, 2), (64, 32, 16, 16)),
            Bench("avgpool 3x3/2 ceil", AvgPool2d(3, 2, ceil_mode=True), (64, 32, 16, 16)),
        ),
    )
)

ADAPTIVE_AVGPOOL = register(
    LayerKind(
        "adaptive_avgpool",
        AdaptiveAvgPool2d,
        "adaptive_avgpool2d",
        options=("output",),
        checks=(
            Check("6x4 -> 3x2 (tiling)", AdaptiveAvgPool2d((3, 2)), (2, 3, 6, 4)),
            Check("7x5 -> 3x2 (overlapping)", AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
            Check("5x7 -> 4x4 (uneven sizes)", AdaptiveAvgPool2d(4), (2, 2, 5, 7)),
            Check("2x3 -> 4x4 (larger than the input)", AdaptiveAvgPool2d(4), (2, 2, 2, 3)),
        ),
        bench=(Bench("adaptive_avgpool 7x7", AdaptiveAvgPool2d(7), (64, 32, 16, 16)),),
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
