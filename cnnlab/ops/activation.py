"""Activations: the ``relu`` layer kind."""

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
