"""Activations: the ``relu``, ``leaky_relu``, ``sigmoid``, ``tanh``, ``elu``, ``gelu``, ``silu``
and ``relu6`` layer kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.ops.cases import away_from_zero
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer

if TYPE_CHECKING:  # numpy loads with the kernels, not with the layer descriptions
    import numpy as np


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


def _spread(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in ±[0.4, 8]: both sides of 0 and of ReLU6's 6, away from the kinks."""
    return 4 * away_from_zero(rng, shape)


def _smooth(name: str, layer: type) -> LayerKind:
    """The registration of an elementwise activation with no options (kernel ``<name>``)."""
    return register(
        LayerKind(
            name,
            layer,
            name,
            checks=(Check("(2,3,4,5)", layer(), (2, 3, 4, 5), _spread),),
            bench=(Bench(name, layer(), (64, 32, 16, 16)),),
        )
    )


@dataclass(frozen=True)
class Sigmoid(Layer):
    """The logistic function ``1 / (1 + exp(-x))`` elementwise.

    Shape:
        x: any shape -> out: x's shape.
    """


@dataclass(frozen=True)
class Tanh(Layer):
    """``tanh(x)`` elementwise.

    Shape:
        x: any shape -> out: x's shape.
    """


@dataclass(frozen=True)
class GELU(Layer):
    """The exact GELU ``x * Phi(x)``, Phi the standard normal CDF (PyTorch's default form,
    not its tanh approximation).

    Shape:
        x: any shape -> out: x's shape.
    """


@dataclass(frozen=True)
class SiLU(Layer):
    """SiLU (swish) ``x * sigmoid(x)`` elementwise.

    Shape:
        x: any shape -> out: x's shape.
    """


@dataclass(frozen=True)
class ReLU6(Layer):
    """``min(max(x, 0), 6)`` elementwise (MobileNetV2's); the gradient at 0 and 6 is 0, as in
    PyTorch.

    Shape:
        x: any shape -> out: x's shape.
    """


SIGMOID = _smooth("sigmoid", Sigmoid)
TANH = _smooth("tanh", Tanh)
GELU_KIND = _smooth("gelu", GELU)
SILU = _smooth("silu", SiLU)
RELU6 = _smooth("relu6", ReLU6)


@dataclass(frozen=True)
class ELU(Layer):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (PyTorch's ``ELU``).

    Shape:
        x: any shape -> out: x's shape.
    """

    alpha: float = 1.0

    def describe(self) -> str:
        return f"ELU {self.alpha:g}"


ELU_KIND = register(
    LayerKind(
        "elu",
        ELU,
        "elu",
        options=("alpha",),
        checks=(
            Check("alpha 1, (2,3,4,5)", ELU(), (2, 3, 4, 5), _spread),
            Check("alpha 0.5, (3,7)", ELU(0.5), (3, 7), _spread),
        ),
        bench=(Bench("elu", ELU(), (64, 32, 16, 16)),),
    )
)


# The ``act=`` choices: a model's main activation, in the slots ``conv_norm_relu`` and the
# models fill (cnnlab.models.blocks.act_layer); each layer's fields are the option's keys.
ACTIVATIONS: dict[str, Layer] = {
    "relu": ReLU(),
    "leaky_relu": LeakyReLU(),
    "elu": ELU(),
    "gelu": GELU(),
    "silu": SiLU(),
    "relu6": ReLU6(),
    "sigmoid": Sigmoid(),
    "tanh": Tanh(),
}
