"""The layer vocabulary architectures are written in: what each layer is, not how it runs.

A layer here is a small frozen description (a conv's filters, kernel, stride, ...) that knows
the shape it produces, the parameters and buffers it owns and its FLOPs. Architectures in
:mod:`cnnlab.models` are trees of these; :mod:`cnnlab.nn.numpy_net` runs a tree on a numpy
kernel set and :mod:`cnnlab.nn.torch_net` on PyTorch, so each model is written exactly once and
``cnnlab summary`` needs no backend at all.

Shapes are per sample: (C, H, W) for feature maps, (D,) for vectors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from cnnlab.errors import ShapeError
from cnnlab.init import ParamSpec
from cnnlab.kernels.geometry import IntPair, conv_geometry, pair, pool_geometry

Shape = tuple[int, ...]


@dataclass(frozen=True)
class BufferSpec:
    """A non-trained state array (batch norm's running statistics) and its initial value."""

    name: str
    shape: Shape
    fill: float


class Layer:
    """Base of every leaf layer. Subclasses override what they have."""

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def params(self, shape: Shape) -> list[ParamSpec]:
        return []

    def buffers(self, shape: Shape) -> list[BufferSpec]:
        return []

    def flops(self, shape: Shape) -> int:
        """Forward FLOPs for one sample: multiply-adds of conv and linear counted as 2."""
        return 0

    def describe(self) -> str:
        """A short label for tables, e.g. ``Conv2d 32@7x7 s1 p3``."""
        return type(self).__name__


def _image(layer: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{layer} needs a (C, H, W) feature map, got {shape}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class Conv2d(Layer):
    """Convolution with ``out_channels`` filters; weight w: (F, C, HH, WW), bias b: (F,)."""

    out_channels: int
    kernel: IntPair
    stride: IntPair = 1
    pad: IntPair = 0
    bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = _image("Conv2d", shape)
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


@dataclass(frozen=True)
class MaxPool2d(Layer):
    kernel: IntPair
    stride: IntPair | None = None
    pad: IntPair = 0
    ties: str = "first"

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = _image("MaxPool2d", shape)
        *_, (Ho, Wo) = pool_geometry("maxpool2d", (1, C, H, W), self.kernel, self.stride, self.pad)
        return (C, Ho, Wo)

    def describe(self) -> str:
        kh, kw = pair(self.kernel)
        return f"MaxPool2d {kh}x{kw} s{pair(self.stride or self.kernel)[0]} p{pair(self.pad)[0]}"


@dataclass(frozen=True)
class AvgPool2d(Layer):
    kernel: IntPair
    stride: IntPair | None = None
    pad: IntPair = 0

    def out_shape(self, shape: Shape) -> Shape:
        C, H, W = _image("AvgPool2d", shape)
        *_, (Ho, Wo) = pool_geometry("avgpool2d", (1, C, H, W), self.kernel, self.stride, self.pad)
        return (C, Ho, Wo)


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Mean over H and W: (C, H, W) -> (C,)."""

    def out_shape(self, shape: Shape) -> Shape:
        return (_image("GlobalAvgPool", shape)[0],)


@dataclass(frozen=True)
class ReLU(Layer):
    pass


@dataclass(frozen=True)
class Flatten(Layer):
    def out_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


@dataclass(frozen=True)
class Linear(Layer):
    """Fully connected; weight w: (out_features, D), bias b: (out_features,)."""

    out_features: int
    bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"Linear needs a flat (D,) input, got {shape}; add a Flatten")
        return (self.out_features,)

    def params(self, shape: Shape) -> list[ParamSpec]:
        self.out_shape(shape)
        specs = [ParamSpec("w", (self.out_features, shape[0]), "weight")]
        return specs + ([ParamSpec("b", (self.out_features,), "bias")] if self.bias else [])

    def flops(self, shape: Shape) -> int:
        return 2 * shape[0] * self.out_features

    def describe(self) -> str:
        return f"Linear {self.out_features}" + ("" if self.bias else " no bias")


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with drop probability p; masks come from the run's numpy RNG."""

    p: float

    def describe(self) -> str:
        return f"Dropout p={self.p:g}"


def _affine(shape: Shape) -> list[ParamSpec]:
    return [ParamSpec("gamma", (shape[0],), "gamma"), ParamSpec("beta", (shape[0],), "beta")]


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch norm: spatial on (C, H, W), dense on (D,); per-channel γ, β, running statistics."""

    eps: float = 1e-5
    momentum: float = 0.1
    backward: str = "fused"

    def params(self, shape: Shape) -> list[ParamSpec]:
        return _affine(shape)

    def buffers(self, shape: Shape) -> list[BufferSpec]:
        return [
            BufferSpec("running_mean", (shape[0],), 0.0),
            BufferSpec("running_var", (shape[0],), 1.0),
        ]


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer norm per sample over (C, H, W); per-channel γ, β."""

    eps: float = 1e-5

    def params(self, shape: Shape) -> list[ParamSpec]:
        return _affine(shape)


@dataclass(frozen=True)
class GroupNorm(Layer):
    """Group norm per sample over groups of C/G channels and (H, W); per-channel γ, β."""

    groups: int
    eps: float = 1e-5

    def out_shape(self, shape: Shape) -> Shape:
        C = _image("GroupNorm", shape)[0]
        if self.groups < 1 or C % self.groups:
            raise ShapeError(f"GroupNorm: {self.groups} groups do not divide {C} channels")
        return shape

    def params(self, shape: Shape) -> list[ParamSpec]:
        return _affine(shape)

    def describe(self) -> str:
        return f"GroupNorm G={self.groups}"


@dataclass(frozen=True)
class LRN(Layer):
    """Local response normalization across channels (AlexNet's, as torch's LocalResponseNorm)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def out_shape(self, shape: Shape) -> Shape:
        return _image("LRN", shape)

    def describe(self) -> str:
        return f"LRN size={self.size}"


@dataclass(frozen=True)
class Sequential:
    """Named children run in order; their parameters are named ``<child>.<param>``."""

    children: Named

    def out_shape(self, shape: Shape) -> Shape:
        for _, child in self.children:
            shape = child.out_shape(shape)
        return shape


@dataclass(frozen=True)
class Residual:
    """``out = body(x) + shortcut(x)`` (identity shortcut when None): ResNet's addition.

    The body's children are named directly under the block, the shortcut's under
    ``shortcut.``, e.g. ``layer2.0.conv1.w`` and ``layer2.0.shortcut.conv.w``.
    """

    body: Sequential
    shortcut: Sequential | None = None

    def out_shape(self, shape: Shape) -> Shape:
        out = self.body.out_shape(shape)
        short = shape if self.shortcut is None else self.shortcut.out_shape(shape)
        if out != short:
            raise ShapeError(f"Residual: body gives {out} but the shortcut gives {short}")
        return out


Node = Layer | Sequential | Residual
Named = tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class LeafInfo:
    """One leaf layer with its full name and the shapes around it (from :func:`leaves`)."""

    name: str
    layer: Layer
    in_shape: Shape
    out_shape: Shape = field(default=())


def leaves(node: Node, shape: Shape, prefix: str = "") -> Iterator[LeafInfo]:
    """Every leaf layer of a tree in execution order, with full names and shapes.

    A shape that does not fit raises ShapeError naming the layer, its input shape and why.
    """
    if isinstance(node, Sequential):
        for name, child in node.children:
            shape = yield from _last(leaves(child, shape, f"{prefix}{name}."), shape)
        return
    if isinstance(node, Residual):
        start = shape
        out = yield from _last(leaves(node.body, start, prefix), start)
        if node.shortcut is not None:
            short = yield from _last(leaves(node.shortcut, start, f"{prefix}shortcut."), start)
        else:
            short = start
        if out != short:
            raise ShapeError(f"{prefix.rstrip('.')}: body gives {out} but the shortcut {short}")
        return
    name = prefix.rstrip(".")
    try:
        out_shape = node.out_shape(shape)
    except ShapeError as exc:
        raise ShapeError(f"layer {name} ({node.describe()}) on input {shape}: {exc}") from None
    yield LeafInfo(name, node, shape, out_shape)


def _last(infos: Iterator[LeafInfo], shape: Shape) -> Iterator[LeafInfo]:
    """Re-yield infos and return the last output shape (``shape`` if there were none)."""
    for info in infos:
        yield info
        shape = info.out_shape
    return shape  # type: ignore[return-value]


def param_specs(net: Node, in_shape: Shape) -> list[ParamSpec]:
    """Every parameter of the tree with its full dotted name, in execution order."""
    return [
        ParamSpec(f"{leaf.name}.{p.name}", p.shape, p.role)
        for leaf in leaves(net, in_shape)
        for p in leaf.layer.params(leaf.in_shape)
    ]


def buffer_specs(net: Node, in_shape: Shape) -> list[BufferSpec]:
    """Every buffer of the tree with its full dotted name."""
    return [
        BufferSpec(f"{leaf.name}.{b.name}", b.shape, b.fill)
        for leaf in leaves(net, in_shape)
        for b in leaf.layer.buffers(leaf.in_shape)
    ]
