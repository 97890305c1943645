"""Training engines: one training step, prediction and state, on a numpy or a torch backend.

The loop in :mod:`cnnlab.train.loop` is written once against this interface; the backend's
framework picks the engine (:data:`ENGINES`). The numpy engine runs :class:`NumpyNet` with this
project's optimizers; the torch engine runs :class:`TorchNet` with ``torch.optim`` doing the
same maths. State (for checkpoints) is a flat dict of numpy arrays in both, with the same keys:
``param/<name>``, ``buffer/<name>`` and ``optim/<name>/<slot>``, whether or not the torch engine
trains data-parallel (:mod:`cnnlab.train.distributed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cnnlab.backends import DEFAULT_OPTIONS, Backend, BackendOptions
from cnnlab.data.batches import Rows
from cnnlab.errors import UsageError
from cnnlab.ops.tree import Node
from cnnlab.train.distributed import SINGLE, Group

if TYPE_CHECKING:
    import torch

    from cnnlab.models import Instance
    from cnnlab.nn.numpy_net import NumpyNet
    from cnnlab.schema import OptimConfig


class Engine(Protocol):
    """What the training loop needs from a backend."""

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        rng: np.random.Generator,
        rows: Rows | None = None,
    ) -> tuple[float, np.ndarray]:
        """One step on a batch: forward, backward, update. Returns ``(loss, logits)``: the mean
        loss over x (0 for no rows) and logits (N, K).

        rows: which rows of the global batch x is, in a data-parallel run (None: all of it).
        """

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits in eval mode (running statistics, no dropout), no gradients."""

    def params(self) -> dict[str, np.ndarray]:
        """Current parameters by name (copies on torch)."""

    def grads(self) -> dict[str, np.ndarray]:
        """The last step's gradients by name."""

    def state(self) -> dict[str, np.ndarray]:
        """Everything a checkpoint needs to continue bit for bit."""

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""

    def load_weights(self, state: dict[str, np.ndarray]) -> None:
        """Restore only parameters and buffers (evaluation, possibly of another backend's run:
        optimizer states differ in layout between numpy and torch)."""


def _split(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


class NumpyEngine:
    """:class:`NumpyNet` on a numpy kernel set, updated by :class:`NumpyOptimizer`."""

    def __init__(
        self,
        backend: Backend,
        net: Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        optim: OptimConfig,
        group: Group = SINGLE,
        options: BackendOptions = DEFAULT_OPTIONS,
    ) -> None:
        from cnnlab.train.optim import NumpyOptimizer

        if group.world > 1:
            raise UsageError(f"backend={backend.name} trains in one process (trainer.devices=1)")
        self.model: NumpyNet = backend.model(net, params, buffers, options)  # type: ignore[assignment]
        self.optimizer = NumpyOptimizer(optim, self.model.params)
        self._grads: dict[str, np.ndarray] = {}

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        rng: np.random.Generator,
        rows: Rows | None = None,
    ) -> tuple[float, np.ndarray]:
        # A diverging run overflows in the loss and the update; the loop stops it on the
        # non-finite loss with one line, so numpy's warnings would only say the same, noisily.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, self._grads, logits = self.model.loss(x, y, True, rng)
            self.optimizer.step(self._grads, lr)
        return loss, logits

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(x, train=False)

    def params(self) -> dict[str, np.ndarray]:
        return self.model.params

    def grads(self) -> dict[str, np.ndarray]:
        return self._grads

    def state(self) -> dict[str, np.ndarray]:
        state = {f"param/{k}": v.copy() for k, v in self.model.params.items()}
        state |= {f"buffer/{k}": v.copy() for k, v in self.model.buffers.items()}
        state |= {f"optim/{k}": v for k, v in self.optimizer.state_dict().items()}
        return state

    def load_weights(self, state: dict[str, np.ndarray]) -> None:
        for k, v in _split(state, "param/").items():
            self.model.params[k][...] = v
        for k, v in _split(state, "buffer/").items():
            self.model.buffers[k][...] = v

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.load_weights(state)
        self.optimizer.load_state_dict(_split(state, "optim/"))


class TorchEngine:
    """:class:`TorchNet` on the backend's device, updated by ``torch.optim``.

    In a data-parallel run (``group.world > 1``) the net is wrapped in DistributedDataParallel
    and its batch norm takes statistics over every rank's rows; names, state and predictions go
    through the bare net, so checkpoints have the keys of a single-process run.
    """

    def __init__(
        self,
        backend: Backend,
        net: Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        optim: OptimConfig,
        group: Group = SINGLE,
        options: BackendOptions = DEFAULT_OPTIONS,
    ) -> None:
        import torch

        from cnnlab.nn.torch_net import TorchNet
        from cnnlab.train.optim import torch_optimizer

        backend.prepare(options)
        self.torch = torch
        self.world = group.world
        self.device = torch.device(group.place(backend.device))
        self.module = TorchNet(net, params, buffers, self.device, group.batch_sum())
        self.trained = group.wrap(self.module)
        self.named = dict(self.module.named_parameters())
        self.optimizer = torch_optimizer(optim, list(self.named.values()))

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return self.torch.as_tensor(a, device=self.device)

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        rng: np.random.Generator,
        rows: Rows | None = None,
    ) -> tuple[float, np.ndarray]:
        from cnnlab.kernels.torch import ops
        from cnnlab.train.optim import set_torch_lr

        n = len(y)
        rows = Rows(0, n, n) if rows is None else rows
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.trained(self._tensor(x), rng, rows)
        if n == 0:
            # A rank without rows (a last batch shorter than the ranks) still joins DDP's
            # gradient average, with zeros.
            loss, objective = None, logits.sum() * 0
        else:
            loss = objective = ops.softmax_cross_entropy(logits, self._tensor(y))
            # DDP averages the ranks' gradients; weighting each rank's mean loss by its share
            # of the batch makes that the gradient of the whole batch's mean loss even when
            # shares differ (a short last batch). One process: the weight is exactly 1.
            weight = n * self.world / rows.total
            if weight != 1:
                objective = loss * weight
        objective.backward()
        set_torch_lr(self.optimizer, lr)
        self.optimizer.step()
        return (0.0 if loss is None else float(loss.detach())), logits.detach().cpu().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.module.eval()
        with self.torch.no_grad():
            return self.module(self._tensor(x)).cpu().numpy()

    def params(self) -> dict[str, np.ndarray]:
        return {k: p.detach().cpu().numpy() for k, p in self.named.items()}

    def grads(self) -> dict[str, np.ndarray]:
        return {
            k: p.grad.detach().cpu().numpy() for k, p in self.named.items() if p.grad is not None
        }

    def state(self) -> dict[str, np.ndarray]:
        state = {f"param/{k}": p.detach().cpu().numpy().copy() for k, p in self.named.items()}
        state |= {
            f"buffer/{k}": b.detach().cpu().numpy().copy() for k, b in self.module.named_buffers()
        }
        names = list(self.named)
        for index, slots in self.optimizer.state_dict()["state"].items():
            for slot, value in slots.items():
                if value is not None:
                    state[f"optim/{names[index]}/{slot}"] = (
                        self.torch.as_tensor(value).cpu().numpy()
                    )
        return state

    def load_weights(self, state: dict[str, np.ndarray]) -> None:
        torch = self.torch
        with torch.no_grad():
            for k, v in _split(state, "param/").items():
                self.named[k].copy_(torch.as_tensor(v))
            buffers = dict(self.module.named_buffers())
            for k, v in _split(state, "buffer/").items():
                buffers[k].copy_(torch.as_tensor(v))

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        torch = self.torch
        self.load_weights(state)
        slots: dict[int, dict[str, Any]] = {}
        index = {name: i for i, name in enumerate(self.named)}
        for key, value in _split(state, "optim/").items():
            name, slot = key.rsplit("/", 1)
            # Adam keeps its step count as a CPU tensor; moments live with their parameter.
            device = "cpu" if slot == "step" else self.device
            slots.setdefault(index[name], {})[slot] = torch.tensor(value, device=device)
        saved = self.optimizer.state_dict()
        saved["state"] = slots
        self.optimizer.load_state_dict(saved)


ENGINES: dict[str, Callable[..., Engine]] = {"numpy": NumpyEngine, "torch": TorchEngine}


def make_engine(
    backend: Backend,
    model: Instance,
    optim: OptimConfig,
    group: Group = SINGLE,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> Engine:
    """The engine of ``backend``'s framework, starting from ``model``'s parameters and
    buffers; group: this process's place in a data-parallel run (torch backends only);
    options: how the backend runs (threads, Winograd)."""
    engine = ENGINES[backend.framework]
    return engine(backend, model.net, model.params, model.buffers, optim, group, options)
