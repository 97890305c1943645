"""The layer tree: what a node is, and the walk that gives every leaf its name and shapes.

A layer is a small frozen description (a conv's filters, kernel, stride, ...) that knows the
shape it produces, the parameters and buffers it owns and its FLOPs. The kinds of layer are
defined and registered in :mod:`cnnlab.ops`, one module per family; architectures in
:mod:`cnnlab.models` are trees of them. :mod:`cnnlab.nn.numpy_net` runs a tree on a numpy kernel
set and :mod:`cnnlab.nn.torch_net` on PyTorch, so each model is written exactly once and
``cnnlab summary`` needs no backend at all.

A tree has three shapes of node: a leaf :class:`Layer`; a :class:`Chain`, whose children run
one after another; and :class:`Branches`, whose branches all take the same input and whose
outputs one kernel combines (a residual sum).

Shapes are per sample: (C, H, W) for feature maps, (D,) for vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from cnnlab.choice import Choice
from cnnlab.errors import ShapeError

Shape = tuple[int, ...]


class Role(Choice):
    """What a parameter is to the init: ``weight`` is drawn by the init scheme, ``bias`` and
    ``beta`` start at zeros, ``gamma`` at ones."""

    weight = "weight"
    bias = "bias"
    gamma = "gamma"
    beta = "beta"


@dataclass(frozen=True)
class ParamSpec:
    """One trained parameter: its name, shape and role.

    Attributes:
        name: the parameter's name, e.g. ``"w"`` on a layer or ``"conv1.w"`` in a tree.
        shape: ``(F, C, HH, WW)`` or ``(D_out, D_in)`` for a weight; any shape otherwise.
        role: a :class:`Role` or its name.
    """

    name: str
    shape: Shape
    role: Role

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))


@dataclass(frozen=True)
class BufferSpec:
    """A non-trained state array (batch norm's running statistics) and its initial value."""

    name: str
    shape: Shape
    fill: float


class Layer:
    """Base of every leaf layer. Subclasses override what they have.

    ``subtracts_mean``: the layer subtracts a per-channel mean (batch, layer and group norm), so
    a bias right before it is cancelled (its gradient is zero) and models leave it out.
    """

    subtracts_mean: ClassVar[bool] = False

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def params(self, shape: Shape) -> list[ParamSpec]:
        return []

    def buffers(self, shape: Shape) -> list[BufferSpec]:
        return []

    def flops(self, shape: Shape) -> int:
        """Forward FLOPs for one sample: multiply-adds of conv and linear counted as 2."""
        return 0

    def passes_through(self, train: bool) -> bool:
        """Whether the layer is the identity in this mode (dropout outside training)."""
        return False

    def describe(self) -> str:
        """A short label for tables, e.g. ``Conv2d 32@7x7 s1 p3``."""
        return type(self).__name__


class Chain:
    """Base of containers whose named children run in order, each on the last one's output."""

    children: Named

    def out_shape(self, shape: Shape) -> Shape:
        """The last child's output shape (ShapeError naming the layer that does not fit)."""
        return out_shape(self, shape)


class Branches:
    """Base of containers whose branches all take the same input; one kernel (named by the
    container's registration) combines their outputs, and the input's gradient is the sum of
    the branches' input gradients."""

    def branches(self) -> tuple[tuple[str, Node | None], ...]:
        """``(prefix, subtree)`` per branch, in the combining kernel's argument order; the
        subtree's parameters are named under ``<block>.<prefix>``; None is the identity."""
        raise NotImplementedError

    def combine_shape(self, shapes: list[Shape]) -> Shape:
        """The output shape from the branches' output shapes (ShapeError if they do not fit)."""
        raise NotImplementedError

    def describe(self, shapes: list[Shape]) -> str:
        """A short label for tables from the branches' output shapes, e.g. ``Concat 64+32``."""
        return type(self).__name__

    def out_shape(self, shape: Shape) -> Shape:
        """The combined output shape (ShapeError naming the layer that does not fit)."""
        return out_shape(self, shape)


Node = Layer | Chain | Branches
Named = tuple[tuple[str, Node], ...]


def image(layer: str, shape: Shape) -> tuple[int, int, int]:
    """shape as (C, H, W), or a ShapeError saying that ``layer`` needs a feature map."""
    if len(shape) != 3:
        raise ShapeError(f"{layer} needs a (C, H, W) feature map, got {shape}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class LeafInfo:
    """One leaf layer with its full name and the shapes around it (from :func:`leaves`);
    ``depth``: how many branch containers and named branches enclose it."""

    name: str
    layer: Layer
    in_shape: Shape
    out_shape: Shape = field(default=())
    depth: int = 0


@dataclass(frozen=True)
class BranchInfo:
    """A :class:`Branches` container (``label`` its :meth:`~Branches.describe`, ``out_shape``
    the combined output), or one of its named branches (``branch``, or ``identity`` for None):
    a nested row of :func:`summarize`, which comes before the leaves inside it."""

    name: str
    label: str
    in_shape: Shape
    out_shape: Shape
    depth: int


def out_shape(node: Node, shape: Shape) -> Shape:
    """The output shape of a whole subtree (ShapeError naming the layer that does not fit)."""
    return _walk(node, shape, "", lambda info: None)


def leaves(node: Node, shape: Shape, prefix: str = "") -> Iterator[LeafInfo]:
    """Every leaf layer of a tree in execution order, with full names and shapes.

    A shape that does not fit raises ShapeError naming the layer, its input shape and why.
    """
    found: list[LeafInfo] = []
    _walk(node, shape, prefix, found.append)
    yield from found


def _walk(
    node: Node,
    shape: Shape,
    prefix: str,
    visit: Callable[[LeafInfo], None],
    nest: Callable[[BranchInfo], None] | None = None,
    depth: int = 0,
) -> Shape:
    """Visit the leaves below ``node`` in execution order; with ``nest``, also each branch
    container and each of its named branches, before the leaves inside them."""
    if isinstance(node, Chain):
        for name, child in node.children:
            shape = _walk(child, shape, f"{prefix}{name}.", visit, nest, depth)
        return shape
    if isinstance(node, Branches):
        return _walk_branches(node, shape, prefix, visit, nest, depth)
    name = prefix.rstrip(".")
    try:
        out = node.out_shape(shape)
    except ShapeError as exc:
        raise ShapeError(f"layer {name} ({node.describe()}) on input {shape}: {exc}") from None
    visit(LeafInfo(name, node, shape, out, depth))
    return out


def _walk_branches(
    node: Branches,
    shape: Shape,
    prefix: str,
    visit: Callable[[LeafInfo], None],
    nest: Callable[[BranchInfo], None] | None,
    depth: int,
) -> Shape:
    # One walk per branch; what it visits is held back, so that the container's row, which
    # shows the combined output of all of them, comes before the rows inside it.
    held: list[list[Callable[[], None]]] = []
    outs: list[Shape] = []
    for name, branch in node.branches():
        rows: list[Callable[[], None]] = []
        held.append(rows)
        if branch is None:
            outs.append(shape)
            continue
        # A named branch gets a row of its own (an unnamed one, a residual body, is the block's).
        inner = depth + (2 if nest is not None and name else 1)
        hold_nest = None if nest is None else (lambda info, r=rows: r.append(partial(nest, info)))
        hold_leaf = lambda leaf, r=rows: r.append(partial(visit, leaf))  # noqa: E731
        outs.append(_walk(branch, shape, f"{prefix}{name}", hold_leaf, hold_nest, inner))
    try:
        out = node.combine_shape(outs)
    except ShapeError as exc:
        raise ShapeError(f"{prefix.rstrip('.')}: {exc}") from None
    if nest is not None:
        nest(BranchInfo(prefix.rstrip("."), node.describe(outs), shape, out, depth))
    for (name, branch), branch_out, rows in zip(node.branches(), outs, held, strict=True):
        if nest is not None and name:
            label = "identity" if branch is None else "branch"
            nest(BranchInfo(f"{prefix}{name}".rstrip("."), label, shape, branch_out, depth + 1))
        for row in rows:
            row()
    return out


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


def summarize(net: Node, in_shape: Shape) -> dict[str, Any]:
    """Per-layer rows (name, label, shapes, parameters, FLOPs, depth) and totals: what
    ``cnnlab summary`` prints and writes to summary.json.

    FLOPs are for one sample's forward pass, multiply-adds of conv and linear layers counted
    as 2 (other layers' element-wise work is left out, as is usual).

    ``branches`` holds a row per branch container (an Inception module: its label lists the
    branches' channels, its output is their concatenation) and per named branch (its output),
    each with ``at``, the index of the first ``layers`` row it comes before (``len(layers)``:
    after them all), and ``depth``, its nesting like the layers' rows. Containers own no
    parameters and count no FLOPs, so the totals are the sums over ``layers``.
    """
    rows: list[dict[str, Any]] = []
    nested: list[dict[str, Any]] = []

    def leaf_row(leaf: LeafInfo) -> None:
        params = sum(math.prod(p.shape) for p in leaf.layer.params(leaf.in_shape))
        rows.append(
            {
                "name": leaf.name,
                "layer": leaf.layer.describe(),
                "in_shape": list(leaf.in_shape),
                "out_shape": list(leaf.out_shape),
                "params": params,
                "flops": leaf.layer.flops(leaf.in_shape),
                "depth": leaf.depth,
            }
        )

    def branch_row(info: BranchInfo) -> None:
        nested.append(
            {
                "name": info.name,
                "layer": info.label,
                "in_shape": list(info.in_shape),
                "out_shape": list(info.out_shape),
                "depth": info.depth,
                "at": len(rows),
            }
        )

    _walk(net, tuple(in_shape), "", leaf_row, branch_row)
    return {
        "input_shape": list(in_shape),
        "total_params": sum(r["params"] for r in rows),
        "total_flops": sum(r["flops"] for r in rows),
        "layers": rows,
        "branches": nested,
    }
