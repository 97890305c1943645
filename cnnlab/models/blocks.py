"""Pieces every architecture uses: the norm slot, conv-norm-ReLU, and width scaling."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from cnnlab.kernels.geometry import IntPair
from cnnlab.ops.activation import ReLU
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.norm import NORMS
from cnnlab.ops.tree import Layer, Node

if TYPE_CHECKING:
    from cnnlab.schema import NormConfig


def norm_layer(norm: NormConfig | None) -> Layer | None:
    """The layer a ``norm=`` choice puts in a norm slot, or None for ``none``.

    norm: the ``norm`` config node (``name`` and that option's keys, the layer's fields).
    """
    default = NORMS[norm.name]
    if default is None:
        return None
    return dataclasses.replace(
        default, **{f.name: norm[f.name] for f in dataclasses.fields(default)}
    )  # type: ignore[type-var]


def conv_norm_relu(
    name: str,
    out_channels: int,
    kernel: IntPair,
    norm: NormConfig | None,
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
        bias = norm_slot is None or not norm_slot.subtracts_mean
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
