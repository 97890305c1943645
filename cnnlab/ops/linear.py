"""Dense layers: the ``linear`` kind, and ``flatten``, which turns feature maps into vectors."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnlab.errors import ShapeError
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import Layer, ParamSpec, Shape


@dataclass(frozen=True)
class Linear(Layer):
    """Fully connected: ``out = x @ w.T + b``.

    Shape:
        x: (N, D) -> out: (N, out_features).

    Attributes:
        w: (out_features, D); b: (out_features,).
    """

    out_features: int
    bias: bool = True

    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"Linear needs a flat (D,) input, got {shape}; add a Flatten")
        return (self.out_features,)

    def params(self, shape: Shape) -> list[ParamSpec]:
        self.out_shape(shape)
        specs = [ParamSpec("w", (self.out_features, shape[0]), "weight")]
        return specs + ([ParamSpec("b", (self.out_features,), "bias")] if self.bias else [])

    def flops(self, shape: Shape) -> int:
        return 2 * shape[0] * self.out_features

    def describe(self) -> str:
        return f"Linear {self.out_features}" + ("" if self.bias else " no bias")


@dataclass(frozen=True)
class Flatten(Layer):
    """Keep the batch axis, merge the rest.

    Shape:
        x: (N, d1, d2, ...) -> out: (N, d1*d2*...).
    """

    def out_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


def _linear_from_spec(spec: dict[str, object], x: tuple[int, ...]) -> Linear:
    """A ``bench.cases`` entry: ``m`` output features (x is (N, D)) and ``bias``."""
    return Linear(int(spec.pop("m")), **spec)  # type: ignore[call-overload, arg-type]


LINEAR = register(
    LayerKind(
        "linear",
        Linear,
        "linear",
        params=("w", "b"),
        checks=(
            Check("7 -> 5, bias", Linear(5), (4, 7)),
            Check("6 -> 3, no bias", Linear(3, bias=False), (3, 6)),
        ),
        bench=(Bench("linear", Linear(100), (64, 2048)),),
        from_spec=_linear_from_spec,
    )
)

FLATTEN = register(
    LayerKind(
        "flatten",
        Flatten,
        "flatten",
        checks=(Check("(2,3,4,5)", Flatten(), (2, 3, 4, 5)),),
        bench=(Bench("flatten", Flatten(), (64, 32, 16, 16)),),
    )
)
