"""The layer registry: one :class:`LayerKind` per kind of layer, and the lookups on it.

A registration says everything cnnlab needs to know about a kind beyond its kernels: its name
(``cnnlab gradcheck layer=<name>``), the class that describes it in a layer tree, the kernels
that compute it, how the layer's options, parameters and buffers bind to the kernels'
arguments, which gradients the backward returns, its gradient-check cases and its default
bench cases. From here, and nowhere else, come the numpy and torch executors' dispatch, the
``layer=`` choices, ``cnnlab gradcheck`` and the default cases of ``cnnlab bench layers``.

**Binding.** For a leaf kind whose kernel is ``k``, with ``name.p`` the layer's arrays::

    out, cache = kernels.k_forward(x, **params, **buffers, **options)   # numpy backends
    grads = kernels.k_backward(dout, cache, **backward_options)
    out = ops.k(x, **params, **buffers, **options)                     # torch executor

``params`` and ``buffers`` pass the layer's arrays under their own names (None for a parameter
the layer does not have, such as a conv without bias); ``options`` pass the layer's attributes
of the same name; ``train`` is added where the kind takes it; a kind with ``mask`` gets a
dropout keep-mask of x's shape drawn from the run's generator with the layer's ``p``. The
backward returns the gradients of :attr:`LayerKind.grads` in that order (one array when there
is one); a kind with ``skips_dx`` also takes ``need_dx`` and returns None for dx when it is
False (a net's first layer).

**Containers.** A :class:`~cnnlab.ops.tree.Chain` runs its children in order and has no kernel.
A :class:`~cnnlab.ops.tree.Branches` node runs every branch on the same input and combines
their outputs with its kernel, ``k_forward(*outs)`` (``ops.k(*outs)`` on torch); the backward
returns one gradient per branch (named by ``inputs``), and the input's gradient is their sum.
A ``variadic`` kind's kernel takes any number of branches, as ``k_forward(*xs)``. A container's
gradient check draws the kernel's inputs, one per branch, at the shapes its check's container
gives them (the branches' output shapes at the check's input): so a check sets the arity and
each input's shape.

**Fused kinds.** A kind with ``fuses`` computes a run of layers in one kernel (conv then ReLU:
``conv_relu``). Trees are written without them; a kernel set that computes a fused kind faster
than its parts names it in its ``fused`` attribute, and its executor runs the tree that
:func:`fused` makes, with every such run replaced by the fused layer (under the first layer's
name, so parameters keep their names). Every backend still implements the fused kernel (it is
checked like any other); only where the set asks for it does it replace the run.

This module imports nothing heavy: ``cnnlab --help`` lists the kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cnnlab.ops.tree import Branches, Chain, Layer, Node

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.kernels.protocol import KernelSet

    # What a backward returns: one gradient, or one per name in LayerKind.grads.
    Grads = np.ndarray | tuple[np.ndarray | None, ...]
    # How a check draws an input of a given shape.
    Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

T = TypeVar("T")
Arrays = dict[str, Any]  # a case's arrays and labels by argument name


@dataclass(frozen=True)
class LayerCase:
    """One layer variant on concrete arrays, runnable on any kernel set.

    Attributes:
        layer: the kind's name (the ``layer=`` option it belongs to).
        variant: what this case exercises, for tables.
        make: draws the arrays (inputs, parameters, buffers, labels, masks).
        wrt: names of the arrays whose gradients are checked, in the order backward returns.
        forward: ``(kernels, arrays) -> (out, cache)``.
        backward: ``(kernels, cache, dout) -> tuple of gradients`` in ``wrt`` order.
    """

    layer: str
    variant: str
    make: Callable[[np.random.Generator], Arrays]
    wrt: tuple[str, ...]
    forward: Callable[[KernelSet, Arrays], tuple[Any, Any]]
    backward: Callable[[KernelSet, Any, Any], tuple[Any, ...]]


@dataclass(frozen=True)
class Check:
    """A gradient-check case of a kind: ``layer`` on an input of shape ``x`` (batch first).

    Attributes:
        variant: what the case exercises, for tables.
        layer: the layer; for a container kind the container, whose branches' output shapes
            at ``x`` are the shapes its kernel's inputs are drawn at (None: every input at
            ``x``); None for the loss.
        x: the input's shape.
        draw: how the input is drawn (None: standard normal); see :mod:`cnnlab.ops.cases`.
        train: the mode, for a kind that takes one.
        build: makes the runnable case where the generic one does not fit (the loss's
            labels); None uses :func:`cnnlab.ops.cases.layer_case`'s.
    """

    variant: str
    layer: Node | None
    x: tuple[int, ...]
    draw: Draw | None = None
    train: bool = True
    build: Callable[[LayerKind, Check], LayerCase] | None = None


@dataclass(frozen=True)
class Bench:
    """A default case of ``cnnlab bench layers``: ``layer`` on an input of shape ``x``; one row
    per variant where the kind has them."""

    name: str
    layer: Node | None
    x: tuple[int, ...]
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerKind:
    """One kind of layer (or container), registered once with :func:`register`.

    Attributes:
        name: the ``layer=`` option and the key of the registry.
        layer: the class that describes the kind in a layer tree (None for the loss, which
            nets call themselves).
        kernel: the kernel-set functions ``<kernel>_forward`` / ``<kernel>_backward`` (numpy
            and torch kernel sets alike) and the torch op ``cnnlab.kernels.torch.ops.<kernel>``
            (marked ``@paired`` with the same gradients, buffers and ``need_dx``: a test
            holds the two together); None for a chain, which has no computation of its own.
        inputs: the forward's differentiable inputs before the parameters: ``("x",)`` for a
            layer, one name per branch for a container, the name of its ``*`` argument for a
            variadic one.
        params: forward arguments that are the layer's parameters, by name.
        buffers: forward arguments that are the layer's buffers, updated in place.
        options: forward arguments that are the layer's attributes of the same name.
        backward_options: ``(argument, attribute)`` pairs: backward arguments taken from the
            layer's attributes (batch norm's ``mode`` from its ``backward``).
        train: the forward takes ``train`` (batch statistics or running ones).
        mask: the forward takes ``mask``, a keep-mask of x's shape drawn per call from the
            run's generator with the layer's drop probability ``p``.
        skips_dx: the backward takes ``need_dx`` and skips dx when it is False.
        variadic: the container's kernel takes one input per branch, any number of them, as
            its ``*<inputs[0]>`` argument; the backward returns one gradient per input.
        across: the torch op that computes the kind in training over a batch split across
            processes (DDP): it takes ``batch_sum`` and ``total`` in place of ``train``.
        pair: the kernel is a forward/backward pair (False for the loss, one function).
        variant: the attribute that names a case's variant in ``cnnlab bench`` (batch norm's
            ``backward``: ``staged`` or ``fused``).
        checks: the gradient-check cases of ``cnnlab gradcheck layer=<name>``.
        bench: the default cases of ``cnnlab bench layers``.
        from_spec: builds the layer from a ``bench.cases`` entry's keys (other than ``name``,
            ``layer``, ``x`` and ``variants``); None passes them to the class as they are.
        fuses: for a fused kind, the classes of the run of layers it replaces, in order.
        fuse: builds the fused layer from such a run's layers.
    """

    name: str
    layer: type | None
    kernel: str | None
    inputs: tuple[str, ...] = ("x",)
    params: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    backward_options: tuple[tuple[str, str], ...] = ()
    train: bool = False
    mask: bool = False
    skips_dx: bool = False
    variadic: bool = False
    across: str | None = None
    pair: bool = True
    variant: str | None = None
    checks: tuple[Check, ...] = ()
    bench: tuple[Bench, ...] = ()
    from_spec: Callable[[dict[str, object], tuple[int, ...]], Node] | None = None
    fuses: tuple[type, ...] = ()
    fuse: Callable[..., Node] | None = None

    @property
    def grads(self) -> tuple[str, ...]:
        """What the backward returns, in order: the inputs' gradients, then the parameters'."""
        return (*self.inputs, *self.params)

    def input_names(self, count: int) -> tuple[str, ...]:
        """The names of a container kernel's ``count`` inputs in a case: :attr:`inputs`, or
        ``xs[0]``, ``xs[1]``, ... for a variadic kind's ``*xs`` (as the kernels' errors name
        them)."""
        if self.variadic:
            return tuple(f"{self.inputs[0]}[{i}]" for i in range(count))
        if count != len(self.inputs):
            raise ValueError(f"{self.name} combines {len(self.inputs)} branches, not {count}")
        return self.inputs

    @property
    def forward(self) -> str:
        """The name of the forward kernel in a kernel set."""
        return f"{self.kernel}_forward"

    @property
    def backward(self) -> str:
        """The name of the backward kernel in a kernel set."""
        return f"{self.kernel}_backward"

    @property
    def functions(self) -> tuple[str, ...]:
        """The kernel-set functions this kind needs on every backend."""
        if self.kernel is None:
            return ()
        return (self.forward, self.backward) if self.pair else (self.kernel,)

    def bind(
        self,
        layer: Node,
        params: Callable[[str], T | None],
        buffers: Callable[[str], T],
        train: bool,
    ) -> dict[str, object]:
        """The forward's keyword arguments after x (the mask aside): the layer's parameters
        and buffers looked up by name, its options, and ``train`` where the kind takes it."""
        args: dict[str, object] = {p: params(p) for p in self.params}
        for b in self.buffers:
            args[b] = buffers(b)
        for o in self.options:
            args[o] = getattr(layer, o)
        if self.train:
            args["train"] = train
        return args

    def backward_args(self, layer: Node) -> dict[str, object]:
        """The backward's keyword arguments taken from the layer (``need_dx`` aside)."""
        return {arg: getattr(layer, attr) for arg, attr in self.backward_options}

    def named_grads(self, result: Grads) -> Iterator[tuple[str, np.ndarray | None]]:
        """``(name, gradient)`` pairs of a backward's result, in :attr:`grads` order; None for
        an absent parameter, or for dx that was not asked for."""
        values = result if isinstance(result, tuple) else (result,)
        return zip(self.grads, values, strict=True)


_KINDS: dict[str, LayerKind] = {}
_BY_CLASS: dict[type, LayerKind] = {}


def register(kind: LayerKind) -> LayerKind:
    """Add a kind to the registry (once per name and per class); returns it."""
    if kind.name in _KINDS:
        raise ValueError(f"layer kind {kind.name!r} is registered twice")
    if kind.layer is not None:
        if kind.layer in _BY_CLASS:
            raise ValueError(f"{kind.layer.__name__} is registered twice")
        if not issubclass(kind.layer, Layer | Chain | Branches):
            raise TypeError(f"{kind.layer.__name__} is not a Layer, Chain or Branches")
        _BY_CLASS[kind.layer] = kind
    _KINDS[kind.name] = kind
    return kind


def kinds() -> Mapping[str, LayerKind]:
    """Every registered kind by name, in registration order."""
    return _KINDS


def kind_of(node: Node) -> LayerKind:
    """The registration of a tree node's class."""
    try:
        return _BY_CLASS[type(node)]
    except KeyError:
        raise TypeError(f"{type(node).__name__} is not a registered layer kind") from None


def kernels_in(node: Node) -> set[str]:
    """The kernels a tree's nodes name (its leaves' and its containers'), in no order."""
    found = set()
    kind = kind_of(node)
    if kind.kernel is not None:
        found.add(kind.kernel)
    if isinstance(node, Chain):
        for _, child in node.children:
            found |= kernels_in(child)
    elif isinstance(node, Branches):
        for _, branch in node.branches():
            found |= kernels_in(branch) if branch is not None else set()
    return found


def checked() -> list[LayerKind]:
    """The kinds ``cnnlab gradcheck`` checks: those with a kernel, in registration order."""
    return [k for k in _KINDS.values() if k.kernel is not None]


def fused(node: Node, names: Collection[str]) -> tuple[Node, dict[str, str]]:
    """``node`` with every run of layers that a fused kind in ``names`` replaces, replaced.

    Returns the new tree and, for each layer folded into another, its dotted name and the name
    of the fused layer that now computes it (``{"relu1": "conv1"}``).
    """
    wanted = [_KINDS[name] for name in names]
    absorbed: dict[str, str] = {}
    return _fuse(node, "", wanted, absorbed), absorbed


def _fuse(node: Node, prefix: str, wanted: list[LayerKind], absorbed: dict[str, str]) -> Node:
    if isinstance(node, Chain):
        children, i = [], 0
        while i < len(node.children):
            name, child = node.children[i]
            kind = next((k for k in wanted if _starts_run(node.children[i:], k.fuses)), None)
            if kind is None or kind.fuse is None:
                children.append((name, _fuse(child, f"{prefix}{name}.", wanted, absorbed)))
                i += 1
                continue
            run = node.children[i : i + len(kind.fuses)]
            children.append((name, kind.fuse(*(layer for _, layer in run))))
            absorbed |= {f"{prefix}{other}": f"{prefix}{name}" for other, _ in run[1:]}
            i += len(run)
        return dataclasses.replace(node, children=tuple(children))  # type: ignore[type-var]
    if isinstance(node, Branches):
        return _rebuilt(node, lambda b, p: _fuse(b, prefix + p, wanted, absorbed))
    return node


def replace_leaves(node: Node, change: Callable[[Layer], Layer]) -> Node:
    """``node`` with every leaf layer replaced by ``change(leaf)``, containers and names kept
    (``model.pool_ties`` sets every max pool's tie rule this way)."""
    if isinstance(node, Chain):
        children = tuple((name, replace_leaves(child, change)) for name, child in node.children)
        return dataclasses.replace(node, children=children)  # type: ignore[type-var]
    if isinstance(node, Branches):
        return _rebuilt(node, lambda b, _: replace_leaves(b, change))
    return change(node)


def _rebuilt(node: Branches, rebuild: Callable[[Node, str], Node]) -> Branches:
    """The container with each branch ``b`` replaced by ``rebuild(b, prefix)``, ``prefix`` the
    name its children are found under (:meth:`Branches.branches`), whatever the container's
    fields hold its branches in: a subtree, or (name, subtree) pairs."""
    prefixes = {id(b): p for p, b in node.branches() if b is not None}

    def branch(b: Node | None) -> Node | None:
        return None if b is None else rebuild(b, prefixes[id(b)])

    changes: dict[str, object] = {}
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if isinstance(value, Layer | Chain | Branches):
            changes[f.name] = branch(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], tuple):
            changes[f.name] = tuple((n, branch(b)) for n, b in value)
    return dataclasses.replace(node, **changes)  # type: ignore[type-var]


def _starts_run(children: tuple[tuple[str, Node], ...], classes: tuple[type, ...]) -> bool:
    """Whether ``children`` begin with layers of exactly ``classes``, in that order."""
    return (
        bool(classes)
        and len(children) >= len(classes)
        and all(type(layer) is cls for (_, layer), cls in zip(children, classes, strict=False))
    )
