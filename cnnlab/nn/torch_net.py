"""Run a layer tree on PyTorch: the same architectures, backward by autograd.

:class:`TorchNet` is an ``nn.Module`` whose parameters carry the numpy executor's dotted names
(``layer1.0.conv1.w``), so weights drawn once in numpy load into either and gradients compare
name by name. Nothing here knows a layer kind: each leaf calls the op its registration names
(``cnnlab.kernels.torch.ops.<kernel>``) with the arguments its binding gives
(:mod:`cnnlab.ops.registry`). Dropout masks come from the run's numpy generator, exactly as on
the numpy backends.

In a data-parallel run each process holds some rows of the batch (:class:`Rows`): dropout masks
are drawn for the whole batch and cut to those rows, and batch norm takes its statistics over
the whole batch through ``batch_sum`` (an all-reduce, the op its registration names as
``across``), so the processes together compute what
one process would on the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cnnlab.data.batches import Rows
from cnnlab.kernels.common import dropout_mask
from cnnlab.kernels.torch import ops
from cnnlab.ops import kind_of
from cnnlab.ops.tree import Branches, Chain, Layer, Node

Tensor = torch.Tensor


class _Run:
    """What one forward pass needs besides the input.

    rows: which rows of the batch x holds (the whole batch in a single process);
    batch_sum: sums a tensor over the processes sharing the batch, or None for one process.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        train: bool,
        rng: np.random.Generator | None,
        rows: Rows,
        batch_sum: Callable[[Tensor], Tensor] | None,
    ) -> None:
        self.modules, self.train, self.rng = modules, train, rng
        self.rows, self.batch_sum = rows, batch_sum

    def mask(self, x: Tensor, p: float) -> Tensor:
        """A dropout keep-mask for x: drawn for the whole batch, as one process would, and cut
        to this process's rows."""
        if self.rng is None:
            raise ValueError("training with dropout needs the run's numpy generator (rng)")
        rows = self.rows
        mask = dropout_mask(self.rng, (rows.total, *x.shape[1:]), p)[rows.slice]
        return torch.as_tensor(mask, device=x.device)


def _forward(node: Node, x: Tensor, prefix: str, run: _Run) -> Tensor:
    if isinstance(node, Chain):
        for name, child in node.children:
            x = _forward(child, x, f"{prefix}{name}.", run)
        return x
    kind = kind_of(node)
    if isinstance(node, Branches):
        outs = [
            x if branch is None else _forward(branch, x, prefix + name, run)
            for name, branch in node.branches()
        ]
        return getattr(ops, str(kind.kernel))(*outs)
    assert isinstance(node, Layer)
    if node.passes_through(run.train):
        return x
    module = run.modules.get(prefix.rstrip("."))
    args = kind.bind(
        node, lambda p: getattr(module, p, None), lambda b: getattr(module, b), run.train
    )
    if kind.mask:
        args["mask"] = run.mask(x, args["p"])  # type: ignore[arg-type]
    if kind.across is not None and run.train and run.batch_sum is not None:
        del args["train"]
        return getattr(ops, kind.across)(x, batch_sum=run.batch_sum, total=run.rows.total, **args)
    return getattr(ops, str(kind.kernel))(x, **args)


class TorchNet(nn.Module):
    """A layer tree as an ``nn.Module`` whose parameter names match the numpy executor's.

    Args:
        net: the architecture (see :mod:`cnnlab.models`).
        params: name -> numpy array, copied in (the torch backend never draws its own weights).
        buffers: name -> numpy array (batch norm's running statistics), copied in.
        device: ``cpu`` or ``cuda``.
        batch_sum: in a data-parallel run, a differentiable sum over the processes (an
            all-reduce) that gives batch norm the statistics of the whole batch; None when one
            process holds the batch.
    """

    def __init__(
        self,
        net: Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        device: str | torch.device = "cpu",
        batch_sum: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.batch_sum = batch_sum
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

    def forward(
        self, x: Tensor, rng: np.random.Generator | None = None, rows: Rows | None = None
    ) -> Tensor:
        """logits: (N, K) for x: (N, C, H, W); ``self.training`` selects batch statistics and
        dropout, as for any torch module. rows: which rows of the whole batch x is, in a
        data-parallel run (None: x is the whole batch)."""
        n = x.shape[0]
        rows = Rows(0, n, n) if rows is None else rows
        run = _Run(self._leaf_modules, self.training, rng, rows, self.batch_sum)
        return _forward(self.net, x, "", run)


class TorchModel:
    """A :class:`TorchNet` behind the numpy-facing interface of :class:`NumpyNet`.

    ``loss``, ``get`` and ``set`` take and return numpy arrays, so gradient checks (and anything
    else written against that interface) drive every backend the same way.
    """

    def __init__(
        self,
        net: Node,
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
        found = {
            n: p.grad.detach().cpu().numpy()
            for n, p in self._params.items()
            if grads and p.grad is not None  # every parameter of a tree takes part in its loss
        }
        return float(loss.detach()), found, logits.detach().cpu().numpy()

    def get(self, name: str) -> np.ndarray:
        """A copy of parameter ``name`` as a numpy array."""
        return self._params[name].detach().cpu().numpy().copy()

    def set(self, name: str, value: np.ndarray) -> None:
        """Overwrite parameter ``name`` with value (same shape)."""
        with torch.no_grad():
            self._params[name].copy_(torch.as_tensor(value))
