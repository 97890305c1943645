"""Run a layer tree on PyTorch: the same architectures, backward by autograd.

:class:`TorchNet` is an ``nn.Module`` whose parameters carry the numpy executor's dotted names
(``layer1.0.conv1.w``), so weights drawn once in numpy load into either and gradients compare
name by name. Nothing here knows a layer kind: each leaf calls the op its registration names
(``cnnlab.kernels.torch.ops.<kernel>``) with the arguments its binding gives
(:mod:`cnnlab.ops.registry`). Dropout masks are drawn before the pass (:meth:`TorchNet.masks`),
by default from the run's numpy generator, exactly as on the numpy backends.

In a data-parallel run each process holds some rows of the batch (:class:`Rows`): dropout masks
are drawn for the whole batch and cut to those rows, and batch norm takes its statistics over
the whole batch through ``batch_sum`` (an all-reduce, the op its registration names as
``across``), so the processes together compute what
one process would on the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

import numpy as np
import torch
from torch import nn

from cnnlab.backends import DEFAULT_OPTIONS, BackendOptions
from cnnlab.data.batches import Rows
from cnnlab.kernels.common import dropout_mask
from cnnlab.kernels.common.dropout import check_p
from cnnlab.kernels.torch import ops
from cnnlab.ops import kind_of
from cnnlab.ops.tree import Branches, Chain, Layer, LeafInfo, Node, leaves
from cnnlab.train.feed import to_device

Tensor = torch.Tensor


class LayerTimer(Protocol):
    """A clock each leaf's op runs through, when one is set (:attr:`TorchNet.timer`:
    ``cnnlab bench model``'s per-layer profile). Autograd runs the backward, so the timer hooks
    the tensors to time it: the gradient of the output arriving starts the leaf's backward."""

    def forward(self, name: str, x: Tensor, call: Callable[[], Tensor]) -> Tensor:
        """``call()``, the op of leaf ``name`` (``layer1.0.conv1``) on its input x, timed."""
        ...


class _Run:
    """What one forward pass needs besides the input.

    masks: each dropout layer's keep-mask by name (drawn before the pass: :meth:`TorchNet.masks`);
    rows: which rows of the batch x holds (the whole batch in a single process);
    batch_sum: sums a tensor over the processes sharing the batch, or None for one process;
    timer: the clock each leaf runs through, or None;
    wanted: the layers (children of a chain, by dotted name) whose outputs go into ``taps``.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        train: bool,
        masks: dict[str, Tensor] | None,
        rows: Rows,
        batch_sum: Callable[[Tensor], Tensor] | None,
        timer: LayerTimer | None = None,
        wanted: frozenset[str] = frozenset(),
    ) -> None:
        self.modules, self.train, self.masks = modules, train, masks
        self.rows, self.batch_sum, self.timer = rows, batch_sum, timer
        self.wanted = wanted
        self.taps: dict[str, Tensor] = {}

    def mask(self, name: str) -> Tensor:
        if self.masks is None or name not in self.masks:
            raise ValueError(f"training {name} (dropout) needs its mask: see TorchNet.masks")
        return self.masks[name]


def _forward(node: Node, x: Tensor, prefix: str, run: _Run) -> Tensor:
    if isinstance(node, Chain):
        for name, child in node.children:
            x = _forward(child, x, f"{prefix}{name}.", run)
            if f"{prefix}{name}" in run.wanted:
                run.taps[f"{prefix}{name}"] = x
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
        args["mask"] = run.mask(prefix.rstrip("."))
    if kind.across is not None and run.train and run.batch_sum is not None:
        del args["train"]
        return getattr(ops, kind.across)(x, batch_sum=run.batch_sum, total=run.rows.total, **args)
    op = getattr(ops, str(kind.kernel))
    if run.timer is not None:
        return run.timer.forward(prefix.rstrip("."), x, lambda: op(x, **args))
    return op(x, **args)


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
        autocast: the 16-bit type the layers run in under ``torch.autocast`` (mixed
            precision), or None; weights stay in their own dtype and logits come out float32.
        channels_last: images and conv weights in NHWC memory order (the same values; the
            layout oneDNN's and cuDNN's fastest convs read).

    Attributes:
        timer: a :class:`LayerTimer` every leaf's op runs through; None (the default) runs
            them directly.
    """

    def __init__(
        self,
        net: Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        device: str | torch.device = "cpu",
        batch_sum: Callable[[Tensor], Tensor] | None = None,
        autocast: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.batch_sum = batch_sum
        self.device = torch.device(device)
        self._mask_layers: dict[tuple[int, ...], list[LeafInfo]] = {}
        self.autocast, self.channels_last = autocast, channels_last
        self.timer: LayerTimer | None = None
        for name, value in params.items():
            owner, leaf = self._owner(name)
            t = torch.tensor(value, device=device)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            owner.register_parameter(leaf, nn.Parameter(t))
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

    def masks(
        self,
        rng: np.random.Generator | torch.Generator | None,
        sample: tuple[int, ...],
        rows: Rows,
    ) -> dict[str, Tensor]:
        """Every dropout layer's keep-mask for a training batch of images of shape ``sample``,
        drawn before the forward pass in the order it meets them: by numpy (the very masks
        the numpy backends draw during theirs) and copied in without blocking, or, given a
        torch generator, on the device. Each is drawn for the whole batch, as one process
        would, and cut to this process's rows.

        Drawing ahead keeps the forward pass free of host work (one graph to compile)."""
        masks = {}
        for leaf in self._dropouts(tuple(sample)):
            if rng is None:
                raise ValueError(f"training {leaf.name} (dropout) needs the run's generator")
            p = float(leaf.layer.p)  # type: ignore[attr-defined]
            shape = (rows.total, *leaf.in_shape)
            if isinstance(rng, torch.Generator):
                check_p(p)
                keep = torch.rand(shape, generator=rng, device=rng.device) >= p
                masks[leaf.name] = keep[rows.slice]
            else:
                masks[leaf.name] = to_device(dropout_mask(rng, shape, p)[rows.slice], self.device)
        return masks

    def _dropouts(self, sample: tuple[int, ...]) -> list[LeafInfo]:
        """The layers that take a mask in training, in execution order (cached per shape)."""
        if sample not in self._mask_layers:
            self._mask_layers[sample] = [
                leaf
                for leaf in leaves(self.net, sample)
                if kind_of(leaf.layer).mask and not leaf.layer.passes_through(True)
            ]
        return self._mask_layers[sample]

    def forward(
        self,
        x: Tensor,
        masks: dict[str, Tensor] | None = None,
        rows: Rows | None = None,
    ) -> Tensor:
        """logits: (N, K) for x: (N, C, H, W); ``self.training`` selects batch statistics and
        dropout, as for any torch module. masks: the dropout layers' keep-masks in training
        (:meth:`masks`); rows: which rows of the whole batch x is, in a data-parallel run
        (None: x is the whole batch)."""
        n = x.shape[0]
        rows = Rows(0, n, n) if rows is None else rows
        run = _Run(self._leaf_modules, self.training, masks, rows, self.batch_sum, self.timer)
        return self._run(x, run)

    def activations(self, x: Tensor, names: Collection[str]) -> dict[str, Tensor]:
        """The outputs of the layers ``names`` (dotted names of any chain's children:
        ``relu1``, ``layer2``, ``layer2.0``) for x: (N, C, H, W), in the module's mode (call
        ``eval()`` first: training needs dropout masks). A name the tree does not have is a
        KeyError."""
        n = x.shape[0]
        wanted = frozenset(names)
        run = _Run(self._leaf_modules, self.training, None, Rows(0, n, n), None, None, wanted)
        self._run(x, run)
        missing = sorted(wanted - set(run.taps))
        if missing:
            raise KeyError(f"no layer named {', '.join(missing)} in the net")
        return run.taps

    def _run(self, x: Tensor, run: _Run) -> Tensor:
        """The logits of one pass over the tree (in float32 under autocast)."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None):
            logits = _forward(self.net, x, "", run)
        return logits if self.autocast is None else logits.float()


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
        options: BackendOptions = DEFAULT_OPTIONS,
    ) -> None:
        from cnnlab.precision import Precision

        self.device = torch.device(device)
        autocast = Precision(options.precision).autocast_dtype()
        self.module = TorchNet(
            net, params, buffers, self.device, None, autocast, options.channels_last
        )
        self._params = dict(self.module.named_parameters())

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        train: bool = True,
        rng: np.random.Generator | None = None,
        grads: bool = True,
        smoothing: float = 0.0,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Softmax cross-entropy of a batch (label smoothing ε = ``smoothing``): ``(loss,
        grads by name, logits)``, by autograd."""
        self.module.train(train)
        for p in self._params.values():
            p.grad = None
        with torch.set_grad_enabled(grads):
            masks = self.module.masks(rng, x.shape[1:], Rows(0, len(x), len(x))) if train else None
            logits = self.module(torch.as_tensor(x, device=self.device), masks)
            y_t = torch.as_tensor(y, device=self.device)
            loss = ops.softmax_cross_entropy(logits, y_t, smoothing)
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
