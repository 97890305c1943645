"""Normalisation: the ``batchnorm``, ``layernorm``, ``groupnorm`` and ``lrn`` layer kinds.

Batch, layer and group norm normalise over different axes and share a per-channel affine
(γ, β); LRN is AlexNet's local response normalisation across channels, with no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import ShapeError
from cnnlab.kernels.choices import BatchNormBackward
from cnnlab.ops.cases import spread, wide
from cnnlab.ops.registry import Bench, Check, LayerKind, register
from cnnlab.ops.tree import BufferSpec, Layer, ParamSpec, Shape, image


def _affine(shape: Shape) -> list[ParamSpec]:
    return [ParamSpec("gamma", (shape[0],), "gamma"), ParamSpec("beta", (shape[0],), "beta")]


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch norm: spatial on (C, H, W) (statistics over N, H, W per channel), dense on (D,).

    In training it normalises with the batch's statistics and updates the running ones
    (momentum, unbiased variance) as PyTorch does; in eval it uses the running ones.
    ``backward`` picks the numpy backends' formula: ``staged`` or ``fused``.

    Shape:
        x: (N, C, H, W) or (N, D) -> out: x's shape.

    Attributes:
        gamma, beta: (C,); buffers running_mean, running_var: (C,).
    """

    subtracts_mean = True
    eps: float = 1e-5
    momentum: float = 0.1
    backward: BatchNormBackward = BatchNormBackward.fused

    def params(self, shape: Shape) -> list[ParamSpec]:
        return _affine(shape)

    def buffers(self, shape: Shape) -> list[BufferSpec]:
        return [
            BufferSpec("running_mean", (shape[0],), 0.0),
            BufferSpec("running_var", (shape[0],), 1.0),
        ]


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer norm per sample over (C, H, W) (over D for a vector); per-channel γ, β.

    Shape:
        x: (N, C, H, W) or (N, D) -> out: x's shape.
    """

    subtracts_mean = True
    eps: float = 1e-5

    def params(self, shape: Shape) -> list[ParamSpec]:
        return _affine(shape)


@dataclass(frozen=True)
class GroupNorm(Layer):
    """Group norm per sample over groups of C/G channels and (H, W); per-channel γ, β.

    Shape:
        x: (N, C, H, W) -> out: x's shape; ``groups`` must divide C.
    """

    subtracts_mean = True
    groups: int
    eps: float = 1e-5

    def out_shape(self, shape: Shape) -> Shape:
        C = image("GroupNorm", shape)[0]
        if self.groups < 1 or C % self.groups:
            raise ShapeError(f"GroupNorm: {self.groups} groups do not divide {C} channels")
        return shape

    def params(self, shape: Shape) -> list[ParamSpec]:
        return _affine(shape)

    def describe(self) -> str:
        return f"GroupNorm G={self.groups}"


@dataclass(frozen=True)
class LRN(Layer):
    """Local response normalisation across channels, as PyTorch's ``LocalResponseNorm``:
    ``out_c = x_c / (k + alpha/size * sum of x^2 over the size channels around c)^beta``,
    zero-padded. The defaults are AlexNet's (torch's k is 1).

    Shape:
        x: (N, C, H, W) -> out: x's shape.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def out_shape(self, shape: Shape) -> Shape:
        return image("LRN", shape)

    def describe(self) -> str:
        return f"LRN size={self.size}"


# The norm= choices, each with the layer (and its defaults) it puts in a model's norm slots;
# "none" leaves them empty. The norm config group's options and their keys come from here.
NORMS: dict[str, Layer | None] = {
    "none": None,
    "batch": BatchNorm(),
    "layer": LayerNorm(),
    "group": GroupNorm(2),
    "lrn": LRN(),
}


BATCHNORM = register(
    LayerKind(
        "batchnorm",
        BatchNorm,
        "batchnorm",
        params=("gamma", "beta"),
        buffers=("running_mean", "running_var"),
        options=("momentum", "eps"),
        backward_options=(("mode", "backward"),),
        train=True,
        across="batchnorm_across",
        variant="backward",
        checks=(
            Check("spatial, train, fused", BatchNorm(), (4, 3, 3, 2), spread),
            Check(
                "spatial, train, staged",
                BatchNorm(backward=BatchNormBackward.staged),
                (4, 3, 3, 2),
                spread,
            ),
            Check("dense, train, fused", BatchNorm(), (6, 5), spread),
            Check(
                "dense, train, staged", BatchNorm(backward=BatchNormBackward.staged), (6, 5), spread
            ),
            Check("spatial, eval", BatchNorm(), (3, 3, 2, 2), spread, train=False),
        ),
        bench=(Bench("batchnorm", BatchNorm(), (64, 32, 16, 16), ("staged", "fused")),),
    )
)

LAYERNORM = register(
    LayerKind(
        "layernorm",
        LayerNorm,
        "layernorm",
        params=("gamma", "beta"),
        options=("eps",),
        checks=(
            Check("spatial (2,4,3,3)", LayerNorm(), (2, 4, 3, 3), spread),
            Check("dense (3,6)", LayerNorm(), (3, 6), spread),
        ),
        bench=(Bench("layernorm", LayerNorm(), (64, 32, 16, 16)),),
    )
)

GROUPNORM = register(
    LayerKind(
        "groupnorm",
        GroupNorm,
        "groupnorm",
        params=("gamma", "beta"),
        options=("groups", "eps"),
        checks=(
            Check("6 channels, 3 groups", GroupNorm(3), (2, 6, 3, 3), spread),
            Check("4 channels, 4 groups", GroupNorm(4), (2, 4, 3, 2), spread),
        ),
        bench=(Bench("groupnorm", GroupNorm(4), (64, 32, 16, 16)),),
    )
)


LRN_KIND = register(
    LayerKind(
        "lrn",
        LRN,
        "lrn",
        options=("size", "alpha", "beta", "k"),
        # With AlexNet's alpha = 1e-4 the layer is almost x * k^-beta, which tests little of
        # the backward; a large alpha makes the cross-channel term a sizeable part of it.
        checks=(
            Check("size 5, AlexNet's alpha 1e-4, (2,7,3,3)", LRN(), (2, 7, 3, 3), wide),
            Check("size 5, alpha 0.5, (2,7,3,3)", LRN(alpha=0.5), (2, 7, 3, 3), wide),
            Check("size 4 (even), alpha 0.8, (2,6,3,2)", LRN(4, 0.8), (2, 6, 3, 2), wide),
            Check(
                "size 5 > 3 channels, alpha 1, beta 1.5, k 1",
                LRN(5, 1.0, 1.5, 1.0),
                (1, 3, 2, 3),
                wide,
            ),
        ),
        bench=(Bench("lrn", LRN(), (64, 32, 16, 16)),),
    )
)
