"""A cnnlab model as a plain PyTorch ``nn.Module``, built from a literal spec: needs torch only.

``cnnlab export`` copies this file into ``model.py`` and appends the run's ``SPEC`` (its layer
tree as nested dicts and lists), ``INPUT_SHAPE``, ``CLASSES``, ``MEAN`` and ``STD``; the weights
go beside it as ``model.pt``, a state dict of the module :func:`build` makes (in ``DTYPE``)::

    import torch
    from model import MEAN, STD, build

    net = build()
    net.load_state_dict(torch.load("model.pt"))
    net.eval()
    # images: (N, C, H, W) pixels in [0, 1], normalised as the run's data were
    x = (images - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    logits = net(x)  # (N, len(CLASSES))

Every layer is torch's own module (``nn.Conv2d``, ``nn.BatchNorm2d``, ...), named as in
cnnlab (``layer1.0.conv1.weight`` for cnnlab's ``layer1.0.conv1.w``), so the module can be
fine-tuned, traced or exported like any other. Four small modules stand for what torch has no
module for: the global average pool, a residual block, a concatenation of branches and a
per-channel gate (squeeze-and-excitation).

A spec node is a dict with a ``kind`` (cnnlab's layer kind) and that kind's fields; a leaf also
has ``in``, its input shape per sample ((C, H, W) or (D,)). Containers hold their children:
``sequential`` a list of ``[name, node]``; ``residual`` a ``body`` and a ``shortcut`` (None:
identity); ``concat`` its ``paths``, ``[name, node or None]`` in channel order; ``channel_gate``
its ``branch``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Spec = dict[str, Any]


class GlobalAvgPool(nn.Module):
    """The mean over each feature map: x (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ConvReLU(nn.Conv2d):
    """``relu(conv(x))``: cnnlab's fused conv and ReLU, with the conv's parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the body's layers are the block's own children (named as
    cnnlab names them: ``layer1.0.conv1``), the shortcut's under ``shortcut``."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body_names = [name for name, _ in body]
        for name, module in body:
            self.add_module(name, module)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.body_names:
            out = self._modules[name](out)
        return out + (x if self.shortcut is None else self.shortcut(x))


class Concat(nn.Module):
    """Branches that all take x, their outputs stacked along channels (Inception, DenseNet);
    a branch of None is the identity."""

    def __init__(self, paths: list[tuple[str, nn.Module | None]]) -> None:
        super().__init__()
        self.path_names = [name for name, _ in paths]
        for name, module in paths:
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self._modules[name] for name in self.path_names]
        return torch.cat([x if b is None else b(x) for b in branches], dim=1)


class ChannelGate(nn.Module):
    """``x * s[:, :, None, None]`` with ``s = branch(x)`` of shape (N, C): squeeze-and-
    excitation. The branch's layers are the gate's own children, as in cnnlab."""

    def __init__(self, branch: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.branch_names = [name for name, _ in branch]
        for name, module in branch:
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x
        for name in self.branch_names:
            s = self._modules[name](s)
        return x * s[:, :, None, None]


def _pair(v: int | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv(spec: Spec, cls: type[nn.Conv2d] = nn.Conv2d) -> nn.Module:
    return cls(
        spec["in"][0],
        spec["out_channels"],
        _pair(spec["kernel"]),
        stride=_pair(spec["stride"]),
        padding=_pair(spec["pad"]),
        dilation=_pair(spec["dilation"]),
        groups=spec["groups"],
        bias=spec["bias"],
    )


def _batchnorm(spec: Spec) -> nn.Module:
    norm = nn.BatchNorm2d if len(spec["in"]) == 3 else nn.BatchNorm1d
    return norm(spec["in"][0], eps=spec["eps"], momentum=spec["momentum"])


def _layernorm(spec: Spec) -> nn.Module:
    # Over (C, H, W) with a per-channel affine: group norm with one group, as cnnlab computes it.
    if len(spec["in"]) == 3:
        return nn.GroupNorm(1, spec["in"][0], eps=spec["eps"])
    return nn.LayerNorm(spec["in"][0], eps=spec["eps"])


def _window(spec: Spec) -> tuple[tuple[int, int], tuple[int, int] | None, tuple[int, int]]:
    """A pooling layer's kernel, stride (None: the kernel's) and padding, as torch takes them."""
    stride = spec["stride"]
    return _pair(spec["kernel"]), None if stride is None else _pair(stride), _pair(spec["pad"])


def _maxpool(spec: Spec) -> nn.Module:
    # cnnlab's ties rule only decides where the gradient goes: the forward is the same.
    return nn.MaxPool2d(*_window(spec), ceil_mode=spec["ceil_mode"])


def _avgpool(spec: Spec) -> nn.Module:
    return nn.AvgPool2d(*_window(spec), ceil_mode=spec["ceil_mode"], count_include_pad=True)


def _named(children: list[list[Any]]) -> list[tuple[str, nn.Module]]:
    return [(name, build_node(child)) for name, child in children]


def _sequential(spec: Spec) -> nn.Module:
    return nn.Sequential(OrderedDict(_named(spec["children"])))


def _chain(spec: Spec | None) -> list[tuple[str, nn.Module]]:
    """The children of a ``sequential`` node, to be a block's own children."""
    return [] if spec is None else _named(spec["children"])


# cnnlab's layer kind -> the module that computes it from its spec node.
BUILDERS: dict[str, Callable[[Spec], nn.Module]] = {
    "relu": lambda s: nn.ReLU(),
    "leaky_relu": lambda s: nn.LeakyReLU(s["slope"]),
    "sigmoid": lambda s: nn.Sigmoid(),
    "tanh": lambda s: nn.Tanh(),
    "gelu": lambda s: nn.GELU(),
    "silu": lambda s: nn.SiLU(),
    "relu6": lambda s: nn.ReLU6(),
    "elu": lambda s: nn.ELU(s["alpha"]),
    "conv": _conv,
    "conv_relu": lambda s: _conv(s, ConvReLU),
    "dropout": lambda s: nn.Dropout(s["p"]),
    "linear": lambda s: nn.Linear(s["in"][0], s["out_features"], bias=s["bias"]),
    "flatten": lambda s: nn.Flatten(),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "groupnorm": lambda s: nn.GroupNorm(s["groups"], s["in"][0], eps=s["eps"]),
    "lrn": lambda s: nn.LocalResponseNorm(s["size"], s["alpha"], s["beta"], s["k"]),
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "adaptive_avgpool": lambda s: nn.AdaptiveAvgPool2d(_pair(s["output"])),
    "global_avgpool": lambda s: GlobalAvgPool(),
    "sequential": _sequential,
    "residual": lambda s: Residual(_chain(s["body"]), _sequential_or_none(s["shortcut"])),
    "concat": lambda s: Concat(
        [(name, None if p is None else build_node(p)) for name, p in s["paths"]]
    ),
    "channel_gate": lambda s: ChannelGate(_chain(s["branch"])),
}


def _sequential_or_none(spec: Spec | None) -> nn.Module | None:
    return None if spec is None else build_node(spec)


def build_node(spec: Spec) -> nn.Module:
    """The module of one spec node (and everything under it)."""
    kind = spec["kind"]
    if kind not in BUILDERS:
        raise ValueError(f"layer kind {kind!r} has no module here; known: {', '.join(BUILDERS)}")
    return BUILDERS[kind](spec)


def build(spec: Spec | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """The model as an ``nn.Module`` (weights not loaded: ``load_state_dict`` them), from
    ``spec`` or, by default, this file's ``SPEC``, in ``dtype`` or, by default, this file's
    ``DTYPE`` (its weights' own: float64 for a run in ``64-true``)."""
    here = globals()
    module = build_node(here["SPEC"] if spec is None else spec)
    return module.to(dtype or getattr(torch, here.get("DTYPE", "float32")))
