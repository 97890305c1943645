"""Containers: ``Sequential`` (children in order), ``Residual`` (ResNet's sum of a body and a
shortcut), ``Concat`` (Inception's and DenseNet's stack of branches along channels) and
``ChannelGate`` (squeeze-and-excitation's per-channel scale). A container's registration says
how its children's outputs combine: a chain has no kernel; ``Residual`` adds its branches with
the ``add`` kernel, whose backward hands dout to both, so the input's gradient is the body's
plus the shortcut's; ``Concat`` stacks them with ``concat``; ``ChannelGate`` multiplies x by
its branch's output with ``channel_gate``."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.pool import GlobalAvgPool
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Branches, Chain, Named, Node, Shape, image


@dataclass(frozen=True)
class Sequential(Chain):
    """Named children run in order; their parameters are named ``<child>.<param>``."""

    children: Named


@dataclass(frozen=True)
class Residual(Branches):
    """``out = body(x) + shortcut(x)`` (identity shortcut when None): ResNet's addition.

    The body's children are named directly under the block, the shortcut's under
    ``shortcut.``, e.g. ``layer2.0.conv1.w`` and ``layer2.0.shortcut.conv.w``.

    Shape:
        x: (N, C, H, W) -> out: the body's output shape, which the shortcut's must equal.
    """

    body: Sequential
    shortcut: Sequential | None = None

    def branches(self) -> tuple[tuple[str, Node | None], ...]:
        return (("", self.body), ("shortcut.", self.shortcut))

    def combine_shape(self, shapes: list[Shape]) -> Shape:
        out, short = shapes
        if out != short:
            raise ShapeError(f"body gives {out} but the shortcut {short}")
        return out

    def describe(self, shapes: list[Shape]) -> str:
        return "Residual body + shortcut"


SEQUENTIAL = register(LayerKind("sequential", Sequential, None))

RESIDUAL = register(
    LayerKind(
        "residual",
        Residual,
        "add",
        inputs=("a", "b"),
        checks=(Check("(2,3,4,4)", None, (2, 3, 4, 4)),),
        bench=(Bench("residual", None, (64, 32, 16, 16)),),
    )
)


@dataclass(frozen=True)
class Concat(Branches):
    """Branches that all take x, their outputs stacked along channels: Inception's modules and
    DenseNet's ``concat(x, f(x))``.

    Args:
        paths: ``(name, branch)`` pairs in channel order; a None branch is the identity. A
            branch's children are named under ``<block>.<name>.``, e.g. ``mixed.b3x3.conv.w``.

    Shape:
        x: (N, C, H, W) -> out: (N, C_1 + ... + C_k, H, W), branch i giving (N, C_i, H, W);
        every branch must keep H and W.
    """

    paths: tuple[tuple[str, Sequential | None], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.paths]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ArgumentError(f"Concat needs branches with distinct non-empty names, got {names}")

    def branches(self) -> tuple[tuple[str, Node | None], ...]:
        return tuple((f"{name}.", branch) for name, branch in self.paths)

    def combine_shape(self, shapes: list[Shape]) -> Shape:
        first = shapes[0]
        if any(len(s) < 2 or s[1:] != first[1:] for s in shapes):
            given = ", ".join(
                f"{name} {s}" for (name, _), s in zip(self.paths, shapes, strict=True)
            )
            raise ShapeError(f"Concat's branches must differ in channels only, got {given}")
        return (sum(s[0] for s in shapes), *first[1:])

    def describe(self, shapes: list[Shape]) -> str:
        """``Concat 64+128+32+32``: the channels of each branch, in order."""
        return "Concat " + "+".join(str(s[0]) for s in shapes)


@dataclass(frozen=True)
class ChannelGate(Branches):
    """``out = x * s[:, :, None, None]`` with ``s = branch(x)``: x scaled per sample and channel
    by what its branch computes from it (squeeze-and-excitation).

    The branch ends in what bounds the scale (SE's sigmoid: part of the block, whatever the
    model's ``act=``). Its children are named directly under the block, e.g. ``se.fc1.w``.

    Args:
        branch: x (N, C, H, W) -> s (N, C). SE with reduction r is global average pool, linear
            C -> C/r, ReLU, linear C/r -> C, sigmoid::

                ChannelGate(Sequential((("pool", GlobalAvgPool()), ("fc1", Linear(C // r)),
                                 ("relu", ReLU()), ("fc2", Linear(C)), ("sigmoid", Sigmoid()))))

    Shape:
        x: (N, C, H, W), branch(x): (N, C) -> out: (N, C, H, W).
    """

    branch: Sequential

    def branches(self) -> tuple[tuple[str, Node | None], ...]:
        return (("", None), ("", self.branch))

    def combine_shape(self, shapes: list[Shape]) -> Shape:
        x, s = shapes
        C = image("ChannelGate", x)[0]
        if s != (C,):
            raise ShapeError(
                f"ChannelGate's branch gives {s} per sample, not ({C},): one factor per channel "
                f"of {x}"
            )
        return x

    def describe(self, shapes: list[Shape]) -> str:
        return "ChannelGate x * s"


def _widths(*channels: int) -> Concat:
    """Branches giving ``channels`` each at x's H, W (1x1 convs): what a concat's check and
    bench cases draw."""
    return Concat(
        tuple((f"b{i}", Sequential((("conv", Conv2d(c, 1)),))) for i, c in enumerate(channels))
    )


def _concat_from_spec(spec: dict[str, object], x: tuple[int, ...]) -> Concat:
    """A ``bench.cases`` entry: ``channels``, the list of each branch's output channels."""
    channels = spec.pop("channels", None)
    if not isinstance(channels, list) or spec:
        raise ArgumentError("give concat's channels, a list of each branch's output channels")
    return _widths(*(int(c) for c in channels))


# The gate's branch in checks and benches: s = the channel means, (N, C).
_POOLED = ChannelGate(Sequential((("pool", GlobalAvgPool()),)))


def _channel_gate_from_spec(spec: dict[str, object], x: tuple[int, ...]) -> ChannelGate:
    """A ``bench.cases`` entry: x alone (the gate's s is (N, C))."""
    if spec:
        raise ArgumentError(f"channel_gate takes no options, got {sorted(spec)}")
    return _POOLED


CONCAT = register(
    LayerKind(
        "concat",
        Concat,
        "concat",
        inputs=("xs",),
        variadic=True,
        checks=(
            Check(
                "3 branches: identity (3), 5 and 2 channels",
                Concat((("x", None), *_widths(5, 2).paths)),
                (2, 3, 4, 5),
            ),
            Check("2 branches of 1 and 4 channels", _widths(1, 4), (3, 2, 3, 3)),
        ),
        bench=(Bench("concat", Concat((("x", None), *_widths(32, 16).paths)), (64, 32, 16, 16)),),
        from_spec=_concat_from_spec,
    )
)

CHANNEL_GATE = register(
    LayerKind(
        "channel_gate",
        ChannelGate,
        "channel_gate",
        inputs=("x", "s"),
        checks=(Check("(2,3,4,5), s (2,3)", _POOLED, (2, 3, 4, 5)),),
        bench=(Bench("channel_gate", _POOLED, (64, 32, 16, 16)),),
        from_spec=_channel_gate_from_spec,
    )
)
