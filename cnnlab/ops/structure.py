"""Containers: ``Sequential`` (children in order) and ``Residual`` (ResNet's sum of a body and a
shortcut). A container's registration says how its children's outputs combine: a chain has no
kernel; ``Residual`` adds its branches with the ``add`` kernel, whose backward hands dout to
both, so the input's gradient is the body's plus the shortcut's."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import ShapeError
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Branches, Chain, Named, Node, Shape


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
