"""Pieces every architecture uses: the stem choice, the norm and activation slots,
conv-norm-act, and width scaling."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from cnnlab.choice import Choice
from cnnlab.kernels.geometry import IntPair
from cnnlab.ops.activation import ACTIVATIONS
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.norm import NORMS
from cnnlab.ops.tree import Layer, Node

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


class Stem(Choice):
    """The first layers (``model.stem``): ``cifar`` for 32x32 inputs, a 3x3 stride-1 conv
    without the early downsampling; ``imagenet`` the paper's, for 224x224 (ResNet's and
    DenseNet's: a 7x7 stride-2 conv and a 3x3 stride-2 max pool). Each model's docstring says
    what its two stems are."""

    cifar = "cifar"
    imagenet = "imagenet"


def act_layer(act: ActConfig | None) -> tuple[str, Layer]:
    """The name and layer an ``act=`` choice puts in an activation slot (ReLU without one:
    runs saved before ``act=`` existed)."""
    if act is None:
        return "relu", ACTIVATIONS["relu"]
    return str(act.name), _configured(ACTIVATIONS[act.name], act)


def _configured(default: Layer, node: NormConfig | ActConfig) -> Layer:
    """A slot's layer with the values its config node gives its fields."""
    fields = {f.name: node[f.name] for f in dataclasses.fields(default)}
    return dataclasses.replace(default, **fields)  # type: ignore[type-var]


def norm_layer(norm: NormConfig | None) -> Layer | None:
    """The layer a ``norm=`` choice puts in a norm slot, or None for ``none``.

    norm: the ``norm`` config node (``name`` and that option's keys, the layer's fields).
    """
    default = NORMS[norm.name]
    return None if default is None else _configured(default, norm)


def conv_norm_relu(
    name: str,
    out_channels: int,
    kernel: IntPair,
    norm: NormConfig | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    bias: bool | None = None,
    relu: bool = True,
    act: ActConfig | None = None,
    groups: int = 1,
) -> list[tuple[str, Node]]:
    """``conv<name>`` – ``norm<name>`` (if any) – ``<act><name>`` (``relu1``, ``gelu1``).

    norm: the ``norm`` config node, or None where the architecture has no norm slot here.
    act: the ``act`` config node (None: ReLU); relu=False leaves the activation out.
    groups: the conv's groups (ResNeXt's grouped 3x3; depthwise when it equals the channels).
    The conv has a bias unless a mean-subtracting norm follows it (or ``bias`` says otherwise).
    """
    norm_slot = None if norm is None else norm_layer(norm)
    if bias is None:
        bias = norm_slot is None or not norm_slot.subtracts_mean
    out: list[tuple[str, Node]] = [
        (f"conv{name}", Conv2d(out_channels, kernel, stride, pad, bias=bias, groups=groups))
    ]
    if norm_slot is not None:
        out.append((f"norm{name}", norm_slot))
    if relu:
        kind, layer = act_layer(act)
        out.append((f"{kind}{name}", layer))
    return out


def scaled(width: int, scale: float) -> int:
    """A layer width times ``scale`` (gradcheck shrinks models this way), at least 1."""
    return max(1, round(width * scale))
