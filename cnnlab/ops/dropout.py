"""Dropout: the ``dropout`` layer kind (inverted dropout, masks from the run's numpy generator)."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with drop probability p: ``out = x * mask / (1 - p)`` in training, the
    identity otherwise. Masks come from the run's numpy generator, so every backend drops the
    same units.

    Shape:
        x: any shape -> out: x's shape.
    """

    p: float

    def passes_through(self, train: bool) -> bool:
        return not train or self.p == 0

    def describe(self) -> str:
        return f"Dropout p={self.p:g}"


DROPOUT = register(
    LayerKind(
        "dropout",
        Dropout,
        "dropout",
        options=("p",),
        mask=True,
        checks=(Check("p=0.3", Dropout(0.3), (2, 3, 4, 4)),),
        bench=(Bench("dropout", Dropout(0.5), (64, 32, 16, 16)),),
    )
)
