"""Layer cases: a registered kind at one input shape, with its arrays, run on any kernel set.

``cnnlab gradcheck`` checks the cases each registration lists (its ``Check`` s) and
``cnnlab bench`` times the same kinds at its own shapes. Both turn them into a ``LayerCase``
with :func:`layer_case`, which draws the arrays (input, parameters by role, buffers, a dropout
mask) and runs the kernel pair through the registration's binding, so a layer is checked and
timed exactly as a net runs it.

Inputs avoid the points where a layer has no derivative (ReLU's kink, ties inside a max-pool
window): centred differences straddling them give neither side.

numpy is imported inside the functions that draw: registrations import this module, and
``cnnlab --help`` lists the registered kinds without loading numpy.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from cnnlab.ops.registry import Arrays, Check, LayerCase, LayerKind
from cnnlab.ops.tree import Branches, BufferSpec, Layer, Node, ParamSpec, out_shape

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.kernels.protocol import KernelSet


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


def layer_case(kind: LayerKind, check: Check) -> LayerCase:
    """The runnable case of one of ``kind``'s checks (or of a bench case built like one)."""
    if check.build is not None:
        return check.build(kind, check)
    if check.layer is None or isinstance(check.layer, Branches):
        return _combine_case(kind, check)
    return _layer_case(kind, check)


def _layer_case(kind: LayerKind, check: Check) -> LayerCase:
    layer = check.layer
    assert isinstance(layer, Layer)
    in_shape = check.x[1:]
    params = {p.name: p for p in layer.params(in_shape)}
    buffers = layer.buffers(in_shape)

    draw = check.draw or normal

    def make(rng: np.random.Generator) -> Arrays:
        arrays = {"x": draw(rng, check.x)}
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
    # The container's kernel alone, on drawn branch outputs: one per branch, at the shape the
    # branch gives x (nothing of the branches runs); every one at x when there is no container.
    node = check.layer
    if node is None:
        shapes = [check.x] * len(kind.inputs)
    else:
        assert isinstance(node, Branches)
        n, sample = check.x[0], check.x[1:]
        shapes = [
            check.x if branch is None else (n, *out_shape(branch, sample))
            for _, branch in node.branches()
        ]
    names = kind.input_names(len(shapes))
    draw = check.draw or normal

    def make(rng: np.random.Generator) -> Arrays:
        return {name: draw(rng, shape) for name, shape in zip(names, shapes, strict=True)}

    def forward(kernels: KernelSet, a: Arrays) -> tuple[Any, Any]:
        return getattr(kernels, kind.forward)(*(a[name] for name in names))

    def backward(kernels: KernelSet, cache: Any, dout: Any) -> tuple[Any, ...]:
        return tuple(getattr(kernels, kind.backward)(dout, cache))

    return LayerCase(kind.name, check.variant, make, names, forward, backward)


def with_variant(kind: LayerKind, layer: Node | None, variant: str) -> Node | None:
    """The layer with its variant attribute set (batch norm's backward), or as it is."""
    if not variant or kind.variant is None or layer is None:
        return layer
    return dataclasses.replace(layer, **{kind.variant: variant})  # type: ignore[type-var]
