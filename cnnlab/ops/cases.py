"""Layer cases: a registered kind at one input shape, with its arrays, run on any kernel set.

``cnnlab gradcheck`` checks the cases each registration lists (:class:`Check`) and
``cnnlab bench`` times the same kinds at its own shapes (:class:`Bench`). Both turn them into a
:class:`LayerCase` here, which draws the arrays (input, parameters by role, buffers, a dropout
mask) and runs the kernel pair through the registration's binding, so a layer is checked and
timed exactly as a net runs it.

Inputs avoid the points where a layer has no derivative (ReLU's kink, ties inside a max-pool
window): centred differences straddling them give neither side.

numpy is imported inside the functions that draw: registrations import this module, and
``cnnlab --help`` lists the registered kinds without loading numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnlab.nn.layers import BufferSpec, Layer, Node, ParamSpec

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.kernels.protocol import KernelSet
    from cnnlab.ops.registry import LayerKind

Arrays = dict[str, Any]  # arrays and labels by argument name
Draw = Callable[["np.random.Generator", tuple[int, ...]], "np.ndarray"]


# -- how inputs are drawn ------------------------------------------------------------------------


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal values."""
    return rng.standard_normal(shape)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with |v| >= 0.1, so a step of 1e-6 never crosses a kink at 0 (ReLU's)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A shuffled, evenly spaced ramp: no two values within 1/size of each other, so no
    max-pool window has a near-tie."""
    import numpy as np

    size = int(np.prod(shape))
    return (rng.permutation(size).astype(np.float64) / size - 0.5).reshape(shape) * 4


def spread(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal values scaled by 1.5 and shifted by 0.3: statistics away from 0 and 1, so a
    normalisation has real work to do."""
    return rng.standard_normal(shape) * 1.5 + 0.3


def wide(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal values scaled by 1.5: large enough for a cross-channel term to matter (LRN)."""
    return rng.standard_normal(shape) * 1.5


def _param(rng: np.random.Generator, spec: ParamSpec) -> np.ndarray:
    # γ around 1 and the rest around 0, away from their init values so that every gradient
    # is tested (a zero bias puts a padded conv window exactly on ReLU's kink).
    if spec.role == "gamma":
        return rng.uniform(0.5, 1.5, size=spec.shape)
    return rng.standard_normal(spec.shape)


def _buffer(rng: np.random.Generator, spec: BufferSpec) -> np.ndarray:
    # Running statistics near their initial mean 0 / variance 1, but not at them.
    if spec.fill == 0:
        return rng.standard_normal(spec.shape) * 0.1
    return rng.uniform(0.5, 2.0, size=spec.shape) * spec.fill


# -- what registrations list ---------------------------------------------------------------------


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
    """A gradient-check case: ``layer`` on an input of shape ``x`` (batch first).

    draw: how the input is drawn; train: the mode of a kind that takes one. For a container
    kind, ``layer`` is None and every branch output is drawn at shape ``x``.
    """

    variant: str
    layer: Node | None
    x: tuple[int, ...]
    draw: Draw = normal
    train: bool = True

    def case(self, kind: LayerKind) -> LayerCase:
        """The runnable case of this check for ``kind``."""
        if self.layer is None:
            return _combine_case(kind, self)
        return _layer_case(kind, self)


@dataclass(frozen=True)
class Bench:
    """A default case of ``cnnlab bench layers``: ``layer`` on an input of shape ``x``; one
    row per variant where the kind has them."""

    name: str
    layer: Node | None
    x: tuple[int, ...]
    variants: tuple[str, ...] = ()


def _layer_case(kind: LayerKind, check: Check) -> LayerCase:
    layer = check.layer
    assert isinstance(layer, Layer)
    in_shape = check.x[1:]
    params = {p.name: p for p in layer.params(in_shape)}
    buffers = layer.buffers(in_shape)

    def make(rng: np.random.Generator) -> Arrays:
        arrays = {"x": check.draw(rng, check.x)}
        arrays |= {name: _param(rng, spec) for name, spec in params.items()}
        arrays |= {spec.name: _buffer(rng, spec) for spec in buffers}
        if kind.mask:
            from cnnlab.kernels.common.dropout import dropout_mask

            arrays["mask"] = dropout_mask(rng, check.x, layer.p)  # type: ignore[attr-defined]
        return arrays

    def forward(kernels: KernelSet, a: Arrays) -> tuple[Any, Any]:
        args = kind.bind(layer, a.get, a.__getitem__, check.train)
        if kind.mask:
            args["mask"] = a["mask"]
        return getattr(kernels, kind.forward)(a["x"], **args)

    wrt = tuple(g for g in kind.grads if g in kind.inputs or g in params)

    def backward(kernels: KernelSet, cache: Any, dout: Any) -> tuple[Any, ...]:
        result = getattr(kernels, kind.backward)(dout, cache, **kind.backward_args(layer))
        return tuple(g for name, g in kind.named_grads(result) if name in wrt)

    return LayerCase(kind.name, check.variant, make, wrt, forward, backward)


def _combine_case(kind: LayerKind, check: Check) -> LayerCase:
    def make(rng: np.random.Generator) -> Arrays:
        return {name: check.draw(rng, check.x) for name in kind.inputs}

    def forward(kernels: KernelSet, a: Arrays) -> tuple[Any, Any]:
        return getattr(kernels, kind.forward)(*(a[name] for name in kind.inputs))

    def backward(kernels: KernelSet, cache: Any, dout: Any) -> tuple[Any, ...]:
        return tuple(getattr(kernels, kind.backward)(dout, cache))

    return LayerCase(kind.name, check.variant, make, kind.inputs, forward, backward)


def with_variant(kind: LayerKind, layer: Node | None, variant: str) -> Node | None:
    """The layer with its variant attribute set (batch norm's backward), or as it is."""
    if not variant or kind.variant is None or layer is None:
        return layer
    return dataclasses.replace(layer, **{kind.variant: variant})  # type: ignore[type-var]
