"""Activations: the ``relu`` and ``leaky_relu`` layer kinds."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.ops.cases import away_from_zero
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer


@dataclass(frozen=True)
class ReLU(Layer):
    """``max(x, 0)`` elementwise; the gradient at exactly 0 is 0, as in PyTorch.

    Shape:
        x: any shape -> out: x's shape.
    """


RELU = register(
    LayerKind(
        "relu",
        ReLU,
        "relu",
        checks=(Check("(2,3,4,5)", ReLU(), (2, 3, 4, 5), away_from_zero),),
        bench=(Bench("relu", ReLU(), (64, 32, 16, 16)),),
    )
)


@dataclass(frozen=True)
class LeakyReLU(Layer):
    """``x`` where positive, ``slope * x`` elsewhere (PyTorch's ``LeakyReLU``); the gradient at
    exactly 0 is the slope, as in PyTorch.

    Shape:
        x: any shape -> out: x's shape.
    """

    slope: float = 0.01

    def describe(self) -> str:
        return f"LeakyReLU {self.slope:g}"


LEAKY_RELU = register(
    LayerKind(
        "leaky_relu",
        LeakyReLU,
        "leaky_relu",
        options=("slope",),
        checks=(
            Check("slope 0.01, (2,3,4,5)", LeakyReLU(), (2, 3, 4, 5), away_from_zero),
            Check("slope 0.2, (3,7)", LeakyReLU(0.2), (3, 7), away_from_zero),
        ),
        bench=(Bench("leaky_relu", LeakyReLU(), (64, 32, 16, 16)),),
    )
)
