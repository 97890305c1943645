"""Run a layer tree on PyTorch: the same architectures, backward by autograd.

:class:`TorchNet` is an ``nn.Module`` whose parameters carry the numpy executor's dotted names
(``layer1.0.conv1.w``), so weights drawn once in numpy load into either and gradients compare
name by name. Each leaf type has one forward here, built from :mod:`cnnlab.kernels.torch.ops`.
Dropout masks come from the run's numpy generator, exactly as on the numpy backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.kernels.common import dropout_mask
from cnnlab.kernels.torch import ops
from cnnlab.nn import layers as L

Tensor = torch.Tensor


class _Run:
    """What one forward pass needs besides the input."""

    def __init__(self, modules: dict[str, nn.Module], train: bool, rng: Any) -> None:
        self.modules, self.train, self.rng = modules, train, rng


def _dropout(layer: L.Dropout, x: Tensor, m: nn.Module, run: _Run) -> Tensor:
    if not run.train or layer.p == 0:
        return x
    if run.rng is None:
        raise ValueError("training with dropout needs the run's numpy generator (rng)")
    mask = torch.as_tensor(dropout_mask(run.rng, tuple(x.shape), layer.p), device=x.device)
    return ops.dropout(x, mask, layer.p)


FORWARD: dict[type, Callable[[Any, Tensor, nn.Module, _Run], Tensor]] = {
    L.Conv2d: lambda layer, x, m, run: ops.conv2d(
        x, m.w, getattr(m, "b", None), layer.stride, layer.pad
    ),
    L.Linear: lambda layer, x, m, run: ops.linear(x, m.w, getattr(m, "b", None)),
    L.MaxPool2d: lambda layer, x, m, run: ops.maxpool2d(
        x, layer.kernel, layer.stride, layer.pad, layer.ties
    ),
    L.AvgPool2d: lambda layer, x, m, run: ops.avgpool2d(x, layer.kernel, layer.stride, layer.pad),
    L.GlobalAvgPool: lambda layer, x, m, run: ops.global_avgpool(x),
    L.ReLU: lambda layer, x, m, run: ops.relu(x),
    L.Flatten: lambda layer, x, m, run: ops.flatten(x),
    L.Dropout: _dropout,
    L.BatchNorm: lambda layer, x, m, run: ops.batchnorm(
        x, m.gamma, m.beta, m.running_mean, m.running_var, run.train, layer.momentum, layer.eps
    ),
    L.LayerNorm: lambda layer, x, m, run: ops.layernorm(x, m.gamma, m.beta, layer.eps),
    L.GroupNorm: lambda layer, x, m, run: ops.groupnorm(
        x, m.gamma, m.beta, layer.groups, layer.eps
    ),
    L.LRN: lambda layer, x, m, run: ops.lrn(x, layer.size, layer.alpha, layer.beta, layer.k),
}


def _forward(node: L.Node, x: Tensor, prefix: str, run: _Run) -> Tensor:
    if isinstance(node, L.Sequential):
        for name, child in node.children:
            x = _forward(child, x, f"{prefix}{name}.", run)
        return x
    if isinstance(node, L.Residual):
        out = _forward(node.body, x, prefix, run)
        short = (
            x if node.shortcut is None else _forward(node.shortcut, x, f"{prefix}shortcut.", run)
        )
        return ops.add(out, short)
    name = prefix.rstrip(".")
    return FORWARD[type(node)](node, x, run.modules.get(name), run)


class TorchNet(nn.Module):
    """A layer tree as an ``nn.Module`` whose parameter names match the numpy executor's.

    Args:
        net: the architecture (see :mod:`cnnlab.models`).
        params: name -> numpy array, copied in (the torch backend never draws its own weights).
        buffers: name -> numpy array (batch norm's running statistics), copied in.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        net: L.Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.net = net
        for name, value in params.items():
            owner, leaf = self._owner(name)
            owner.register_parameter(leaf, nn.Parameter(torch.tensor(value, device=device)))
        for name, value in buffers.items():
            owner, leaf = self._owner(name)
            owner.register_buffer(leaf, torch.tensor(value, device=device))
        self._leaf_modules = dict(self.named_modules())

    def _owner(self, dotted: str) -> tuple[nn.Module, str]:
        """The module that holds ``a.b.c.w`` (made on the way), and ``w``."""
        *path, leaf = dotted.split(".")
        module: nn.Module = self
        for part in path:
            if part not in module._modules:
                module.add_module(part, nn.Module())
            module = module._modules[part]  # type: ignore[assignment]
        return module, leaf

    def forward(self, x: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """logits: (N, K) for x: (N, C, H, W); ``self.training`` selects batch statistics and
        dropout, as for any torch module."""
        return _forward(self.net, x, "", _Run(self._leaf_modules, self.training, rng))


class TorchModel:
    """A :class:`TorchNet` behind the numpy-facing interface of :class:`NumpyNet`.

    ``loss``, ``get`` and ``set`` take and return numpy arrays, so gradient checks (and anything
    else written against that interface) drive every backend the same way.
    """

    def __init__(
        self,
        net: L.Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        device: str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.module = TorchNet(net, params, buffers, self.device)
        self._params = dict(self.module.named_parameters())

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        train: bool = True,
        rng: np.random.Generator | None = None,
        grads: bool = True,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Softmax cross-entropy of a batch: ``(loss, grads by name, logits)``, by autograd."""
        self.module.train(train)
        for p in self._params.values():
            p.grad = None
        with torch.set_grad_enabled(grads):
            logits = self.module(torch.as_tensor(x, device=self.device), rng)
            loss = ops.softmax_cross_entropy(logits, torch.as_tensor(y, device=self.device))
            if grads:
                loss.backward()
        found = {n: p.grad.detach().cpu().numpy() for n, p in self._params.items()} if grads else {}
        return float(loss.detach()), found, logits.detach().cpu().numpy()

    def get(self, name: str) -> np.ndarray:
        """A copy of parameter ``name`` as a numpy array."""
        return self._params[name].detach().cpu().numpy().copy()

    def set(self, name: str, value: np.ndarray) -> None:
        """Overwrite parameter ``name`` with value (same shape)."""
        with torch.no_grad():
            self._params[name].copy_(torch.as_tensor(value))
