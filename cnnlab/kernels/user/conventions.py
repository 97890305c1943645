"""The two course conventions a user's layer file may follow, recognised from its names.

**CS231n** (numpy functions): ``conv_forward_naive(x, w, b, conv_param)`` with
``conv_param = {'stride', 'pad'}`` -> ``(out, cache)``; ``conv_backward_naive(dout, cache)`` ->
``(dx, dw, db)``; ``max_pool_forward_naive(x, pool_param)`` with ``pool_height``,
``pool_width``, ``stride``; ``affine_*`` (w: (D, M), x flattened per sample); ``relu_*``;
``batchnorm_*`` / ``spatial_batchnorm_*`` with ``bn_param = {mode, eps, momentum,
running_mean, running_var}``, whose running statistics follow
``running = momentum * running + (1 - momentum) * batch`` with the biased variance
(``batchnorm_backward_alt`` is the fused backward); ``layernorm_*`` on (N, D);
``spatial_groupnorm_*`` with gamma of shape (1, C, 1, 1); ``dropout_*`` with
``dropout_param = {p, mode, seed}``, p the probability of *keeping* a unit;
``softmax_loss(x, y)`` -> ``(loss, dx)``. The ``_fast`` names are taken where the ``_naive``
ones are missing.

**EECS 498** (classes of static methods on torch tensors): ``Conv``, ``MaxPool``, ``Linear``,
``ReLU``, ``BatchNorm`` (``backward_alt``), ``SpatialBatchNorm`` and ``Dropout``, each with
``forward`` and ``backward`` taking the same arguments as CS231n's functions, except that
dropout's p is the probability of *dropping* a unit (as in cnnlab and torch).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    """One course's names for the layers cnnlab can check.

    Attributes:
        name: for messages and tables.
        tensors: the functions take and return torch tensors.
        layers: cnnlab's layer (a kernel name, ``batchnorm`` split into its dense and spatial
            forms) -> ``(forward, backward)`` name pairs, preferred first.
        loss: the softmax loss function's names, preferred first.
        fused_batchnorm: the fused batch-norm backward (``batchnorm_backward_alt``).
        keep_p: dropout's p is the keep probability.
    """

    name: str
    tensors: bool
    layers: dict[str, tuple[tuple[str, str], ...]]
    loss: tuple[str, ...]
    fused_batchnorm: str
    keep_p: bool


def _functions(stem: str, *suffixes: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{stem}_forward{s}", f"{stem}_backward{s}") for s in suffixes)


def _methods(cls: str) -> tuple[tuple[str, str], ...]:
    return ((f"{cls}.forward", f"{cls}.backward"),)


CS231N = Convention(
    name="CS231n",
    tensors=False,
    layers={
        "conv2d": _functions("conv", "_naive", "_fast"),
        "maxpool2d": _functions("max_pool", "_naive", "_fast"),
        "relu": _functions("relu", ""),
        "linear": _functions("affine", ""),
        "batchnorm": _functions("batchnorm", ""),
        "spatial_batchnorm": _functions("spatial_batchnorm", ""),
        "layernorm": _functions("layernorm", ""),
        "groupnorm": _functions("spatial_groupnorm", ""),
        "dropout": _functions("dropout", ""),
    },
    loss=("softmax_loss",),
    fused_batchnorm="batchnorm_backward_alt",
    keep_p=True,
)

EECS498 = Convention(
    name="EECS 498",
    tensors=True,
    layers={
        "conv2d": _methods("Conv"),
        "maxpool2d": _methods("MaxPool"),
        "relu": _methods("ReLU"),
        "linear": _methods("Linear"),
        "batchnorm": _methods("BatchNorm"),
        "spatial_batchnorm": _methods("SpatialBatchNorm"),
        "dropout": _methods("Dropout"),
    },
    loss=("softmax_loss",),
    fused_batchnorm="BatchNorm.backward_alt",
    keep_p=False,
)

CONVENTIONS = (EECS498, CS231N)


def recognise(names: set[str]) -> Convention | None:
    """The convention whose names the code defines most of; None when it defines none."""
    counts = [
        (sum(f in names for pairs in c.layers.values() for pair in pairs for f in pair), c)
        for c in CONVENTIONS
    ]
    count, best = max(counts, key=lambda item: item[0])
    return best if count else None
