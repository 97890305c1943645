"""Pieces every architecture uses: the norm slot, conv-norm-ReLU, and width scaling."""

from __future__ import annotations

from typing import Any

from cnnlab.errors import UsageError
from cnnlab.kernels.geometry import IntPair
from cnnlab.ops.activation import ReLU
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.norm import LRN, BatchNorm, GroupNorm, LayerNorm
from cnnlab.ops.tree import Layer, Node

NORMS = ("none", "batch", "layer", "group", "lrn")
# Norms that subtract a per-channel mean: a conv bias right before one of them is cancelled
# (its gradient is zero), so such convs have none.
MEAN_FREE = ("batch", "layer", "group")


def norm_layer(norm: Any) -> Layer | None:
    """The layer a ``norm=`` choice puts in a norm slot, or None for ``none``.

    norm: the ``norm`` config node (``name`` and that option's keys).
    """
    name = norm.name
    if name == "none":
        return None
    if name == "batch":
        return BatchNorm(eps=norm.eps, momentum=norm.momentum, backward=norm.backward)
    if name == "layer":
        return LayerNorm(eps=norm.eps)
    if name == "group":
        return GroupNorm(groups=norm.groups, eps=norm.eps)
    if name == "lrn":
        return LRN(size=norm.size, alpha=norm.alpha, beta=norm.beta, k=norm.k)
    raise UsageError(f"norm={name}: no such norm; choose from {', '.join(NORMS)}")


def conv_norm_relu(
    name: str,
    out_channels: int,
    kernel: IntPair,
    norm: Any | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    bias: bool | None = None,
    relu: bool = True,
) -> list[tuple[str, Node]]:
    """``conv<name>`` – ``norm<name>`` (if any) – ``relu<name>``.

    norm: the ``norm`` config node, or None where the architecture has no norm slot here.
    The conv has a bias unless a mean-subtracting norm follows it (or ``bias`` says otherwise).
    """
    norm_slot = None if norm is None else norm_layer(norm)
    if bias is None:
        bias = norm is None or norm.name not in MEAN_FREE
    out: list[tuple[str, Node]] = [
        (f"conv{name}", Conv2d(out_channels, kernel, stride, pad, bias=bias))
    ]
    if norm_slot is not None:
        out.append((f"norm{name}", norm_slot))
    if relu:
        out.append((f"relu{name}", ReLU()))
    return out


def scaled(width: int, scale: float) -> int:
    """A layer width times ``scale`` (gradcheck shrinks models this way), at least 1."""
    return max(1, round(width * scale))
