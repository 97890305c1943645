"""The cases ``cnnlab gradcheck layer=<name>`` checks: small float64 inputs per layer variant.

Each case draws its arrays from a generator, runs one kernel pair of a kernel set and names the
arrays it differentiates. Inputs avoid the points where a layer has no derivative (ReLU's kink,
ties inside a max-pool window), since centred differences straddling them give neither side.

The ``*_spec`` builders are public: ``cnnlab bench`` times the same kernel pairs on its own shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Arrays = dict[str, Any]
Kernels = Any  # a kernel set: a numpy backend module or a TorchKernels instance


@dataclass(frozen=True)
class LayerCase:
    """One layer variant to check.

    Attributes:
        layer: the ``layer=`` option it belongs to.
        variant: what this case exercises, for tables.
        make: draws the arrays (inputs, parameters, labels, masks, running statistics).
        wrt: names of the arrays whose gradients are checked, in the order backward returns.
        forward: ``(kernels, arrays) -> (out, cache)``.
        backward: ``(kernels, cache, dout) -> tuple of gradients`` in ``wrt`` order.
    """

    layer: str
    variant: str
    make: Callable[[np.random.Generator], Arrays]
    wrt: tuple[str, ...]
    forward: Callable[[Kernels, Arrays], tuple[Any, Any]]
    backward: Callable[[Kernels, Any, Any], tuple[Any, ...]]


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def _away_from_zero(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Values with |v| >= 0.1, so a step of 1e-6 never crosses ReLU's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def _distinct(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """A shuffled, evenly spaced ramp: no two values within 1/size of each other, so no
    max-pool window has a near-tie."""
    size = int(np.prod(shape))
    return (rng.permutation(size).astype(np.float64) / size - 0.5).reshape(shape) * 4


# -- conv --------------------------------------------------------------------------------------


def conv_spec(x: tuple[int, ...], w: tuple[int, ...], bias: bool, stride: Any, pad: Any) -> dict:
    def make(rng: np.random.Generator) -> Arrays:
        arrays = {"x": _normal(rng, *x), "w": _normal(rng, *w)}
        if bias:
            arrays["b"] = _normal(rng, w[0])
        return arrays

    return dict(
        make=make,
        wrt=("x", "w", "b") if bias else ("x", "w"),
        forward=lambda k, a: k.conv2d_forward(a["x"], a["w"], a.get("b"), stride, pad),
        backward=lambda k, c, d: k.conv2d_backward(d, c)[: 3 if bias else 2],
    )


# -- pooling -----------------------------------------------------------------------------------


def maxpool_spec(x: tuple[int, ...], kernel: Any, stride: Any, pad: Any, ties: str) -> dict:
    return dict(
        make=lambda rng: {"x": _distinct(rng, *x)},
        wrt=("x",),
        forward=lambda k, a: k.maxpool2d_forward(a["x"], kernel, stride, pad, ties),
        backward=lambda k, c, d: (k.maxpool2d_backward(d, c),),
    )


def avgpool_spec(x: tuple[int, ...], kernel: Any, stride: Any, pad: Any) -> dict:
    return dict(
        make=lambda rng: {"x": _normal(rng, *x)},
        wrt=("x",),
        forward=lambda k, a: k.avgpool2d_forward(a["x"], kernel, stride, pad),
        backward=lambda k, c, d: (k.avgpool2d_backward(d, c),),
    )


def global_avgpool_spec(x: tuple[int, ...]) -> dict:
    return dict(
        make=lambda rng: {"x": _normal(rng, *x)},
        wrt=("x",),
        forward=lambda k, a: k.global_avgpool_forward(a["x"]),
        backward=lambda k, c, d: (k.global_avgpool_backward(d, c),),
    )


# -- elementwise and dense ---------------------------------------------------------------------


def relu_spec(x: tuple[int, ...]) -> dict:
    return dict(
        make=lambda rng: {"x": _away_from_zero(rng, *x)},
        wrt=("x",),
        forward=lambda k, a: k.relu_forward(a["x"]),
        backward=lambda k, c, d: (k.relu_backward(d, c),),
    )


def linear_spec(n: int, d: int, m: int, bias: bool) -> dict:
    def make(rng: np.random.Generator) -> Arrays:
        arrays = {"x": _normal(rng, n, d), "w": _normal(rng, m, d)}
        if bias:
            arrays["b"] = _normal(rng, m)
        return arrays

    return dict(
        make=make,
        wrt=("x", "w", "b") if bias else ("x", "w"),
        forward=lambda k, a: k.linear_forward(a["x"], a["w"], a.get("b")),
        backward=lambda k, c, d: k.linear_backward(d, c)[: 3 if bias else 2],
    )


def flatten_spec(x: tuple[int, ...]) -> dict:
    return dict(
        make=lambda rng: {"x": _normal(rng, *x)},
        wrt=("x",),
        forward=lambda k, a: k.flatten_forward(a["x"]),
        backward=lambda k, c, d: (k.flatten_backward(d, c),),
    )


def dropout_spec(x: tuple[int, ...], p: float) -> dict:
    def make(rng: np.random.Generator) -> Arrays:
        from cnnlab.kernels.common import dropout_mask

        return {"x": _normal(rng, *x), "mask": dropout_mask(rng, x, p)}

    return dict(
        make=make,
        wrt=("x",),
        forward=lambda k, a: k.dropout_forward(a["x"], a["mask"], p),
        backward=lambda k, c, d: (k.dropout_backward(d, c),),
    )


def softmax_spec(n: int, classes: int) -> dict:
    def forward(k: Kernels, a: Arrays) -> tuple[Any, Any]:
        loss, dlogits = k.softmax_cross_entropy(a["logits"], a["y"])
        return np.asarray(loss), dlogits

    return dict(
        make=lambda rng: {
            "logits": _normal(rng, n, classes) * 2,
            "y": rng.integers(0, classes, size=n),
        },
        wrt=("logits",),
        forward=forward,
        # The loss is the network's end: its "cache" is dL/dlogits, scaled by the upstream dout.
        backward=lambda k, dlogits, d: (dlogits * d,),
    )


def residual_spec(x: tuple[int, ...]) -> dict:
    return dict(
        make=lambda rng: {"a": _normal(rng, *x), "b": _normal(rng, *x)},
        wrt=("a", "b"),
        forward=lambda k, a: k.add_forward(a["a"], a["b"]),
        backward=lambda k, c, d: k.add_backward(d, c),
    )


# -- normalisation -----------------------------------------------------------------------------


def _affine(rng: np.random.Generator, x: tuple[int, ...]) -> Arrays:
    """x with a per-channel γ, β away from their init values, so their gradients are tested."""
    channels = x[1]
    return {
        "x": _normal(rng, *x) * 1.5 + 0.3,
        "gamma": rng.uniform(0.5, 1.5, size=channels),
        "beta": _normal(rng, channels),
    }


def batchnorm_spec(x: tuple[int, ...], train: bool, mode: str) -> dict:
    def make(rng: np.random.Generator) -> Arrays:
        arrays = _affine(rng, x)
        arrays["running_mean"] = _normal(rng, x[1]) * 0.1
        arrays["running_var"] = rng.uniform(0.5, 2.0, size=x[1])
        return arrays

    return dict(
        make=make,
        wrt=("x", "gamma", "beta"),
        forward=lambda k, a: k.batchnorm_forward(
            a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"], train=train
        ),
        backward=lambda k, c, d: k.batchnorm_backward(d, c, mode=mode),
    )


def layernorm_spec(x: tuple[int, ...]) -> dict:
    return dict(
        make=lambda rng: _affine(rng, x),
        wrt=("x", "gamma", "beta"),
        forward=lambda k, a: k.layernorm_forward(a["x"], a["gamma"], a["beta"]),
        backward=lambda k, c, d: k.layernorm_backward(d, c),
    )


def groupnorm_spec(x: tuple[int, ...], groups: int) -> dict:
    return dict(
        make=lambda rng: _affine(rng, x),
        wrt=("x", "gamma", "beta"),
        forward=lambda k, a: k.groupnorm_forward(a["x"], a["gamma"], a["beta"], groups),
        backward=lambda k, c, d: k.groupnorm_backward(d, c),
    )


def lrn_spec(
    x: tuple[int, ...], size: int, alpha: float, beta: float = 0.75, k: float = 2.0
) -> dict:
    # With AlexNet's alpha = 1e-4 the layer is almost x * k^-beta, which tests little of the
    # backward; a large alpha makes the cross-channel term a sizeable part of the gradient.
    return dict(
        make=lambda rng: {"x": _normal(rng, *x) * 1.5},
        wrt=("x",),
        forward=lambda kernels, a: kernels.lrn_forward(a["x"], size, alpha, beta, k),
        backward=lambda kernels, c, d: (kernels.lrn_backward(d, c),),
    )


_CASES: list[tuple[str, str, dict]] = [
    ("conv", "3x3, stride 1, pad 1, bias", conv_spec((2, 3, 6, 5), (4, 3, 3, 3), True, 1, 1)),
    (
        "conv",
        "5x3, stride 2, pad (2,1), no bias",
        conv_spec((2, 2, 9, 7), (3, 2, 5, 3), False, 2, (2, 1)),
    ),
    ("conv", "1x1, stride (2,1), batch 1", conv_spec((1, 4, 5, 6), (2, 4, 1, 1), True, (2, 1), 0)),
    (
        "conv",
        "3x3, 16 channels, pad 1 (im2col: Winograd)",
        conv_spec((2, 16, 6, 7), (16, 16, 3, 3), True, 1, 1),
    ),
    ("maxpool", "2x2, stride 2, ties first", maxpool_spec((2, 3, 6, 6), 2, None, 0, "first")),
    ("maxpool", "3x3, stride 2, pad 1 (overlapping)", maxpool_spec((2, 2, 7, 7), 3, 2, 1, "first")),
    (
        "maxpool",
        "2x3, stride (1,2), ties all",
        maxpool_spec((1, 2, 5, 7), (2, 3), (1, 2), 0, "all"),
    ),
    ("avgpool", "2x2, stride 2", avgpool_spec((2, 3, 6, 6), 2, None, 0)),
    ("avgpool", "3x3, stride 2, pad 1", avgpool_spec((2, 2, 7, 7), 3, 2, 1)),
    ("avgpool", "global, 5x4", global_avgpool_spec((2, 3, 5, 4))),
    ("relu", "(2,3,4,5)", relu_spec((2, 3, 4, 5))),
    ("linear", "7 -> 5, bias", linear_spec(4, 7, 5, True)),
    ("linear", "6 -> 3, no bias", linear_spec(3, 6, 3, False)),
    ("flatten", "(2,3,4,5)", flatten_spec((2, 3, 4, 5))),
    ("dropout", "p=0.3", dropout_spec((2, 3, 4, 4), 0.3)),
    ("softmax", "8 samples, 7 classes", softmax_spec(8, 7)),
    ("batchnorm", "spatial, train, fused", batchnorm_spec((4, 3, 3, 2), True, "fused")),
    ("batchnorm", "spatial, train, staged", batchnorm_spec((4, 3, 3, 2), True, "staged")),
    ("batchnorm", "dense, train, fused", batchnorm_spec((6, 5), True, "fused")),
    ("batchnorm", "dense, train, staged", batchnorm_spec((6, 5), True, "staged")),
    ("batchnorm", "spatial, eval", batchnorm_spec((3, 3, 2, 2), False, "fused")),
    ("layernorm", "spatial (2,4,3,3)", layernorm_spec((2, 4, 3, 3))),
    ("layernorm", "dense (3,6)", layernorm_spec((3, 6))),
    ("groupnorm", "6 channels, 3 groups", groupnorm_spec((2, 6, 3, 3), 3)),
    ("groupnorm", "4 channels, 4 groups", groupnorm_spec((2, 4, 3, 2), 4)),
    ("lrn", "size 5, AlexNet's alpha 1e-4, (2,7,3,3)", lrn_spec((2, 7, 3, 3), 5, 1e-4)),
    ("lrn", "size 5, alpha 0.5, (2,7,3,3)", lrn_spec((2, 7, 3, 3), 5, 0.5)),
    ("lrn", "size 4 (even), alpha 0.8, (2,6,3,2)", lrn_spec((2, 6, 3, 2), 4, 0.8)),
    (
        "lrn",
        "size 5 > 3 channels, alpha 1, beta 1.5, k 1",
        lrn_spec((1, 3, 2, 3), 5, 1.0, 1.5, 1.0),
    ),
    ("residual", "(2,3,4,4)", residual_spec((2, 3, 4, 4))),
]

LAYER_CASES: list[LayerCase] = [
    LayerCase(layer, variant, **spec) for layer, variant, spec in _CASES
]
LAYERS: list[str] = list(dict.fromkeys(case.layer for case in LAYER_CASES))


def cases_for(layer: str) -> list[LayerCase]:
    """The cases of one ``layer=`` option, or of every layer for ``all``."""
    return [c for c in LAYER_CASES if layer in ("all", c.layer)]
