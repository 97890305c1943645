"""Training engines: one training step, prediction and state, on a numpy or a torch backend.

The loop in :mod:`cnnlab.train.loop` is written once against this interface; the backend's
framework picks the engine (:data:`ENGINES`). The numpy engine runs :class:`NumpyNet` with this
project's optimizers; the torch engine runs :class:`TorchNet` with ``torch.optim`` doing the
same maths, and leaves each step's loss and accuracy on its device (a :class:`Step`) until the
loop fetches them at a log point. Batches come from the engine's feed and random numbers from
its draws (:mod:`cnnlab.train.feed`, :mod:`cnnlab.train.draws`). State (for checkpoints) is a
flat dict of numpy arrays in both, with the same keys: ``param/<name>``, ``buffer/<name>`` and
``optim/<name>/<slot>``, whether or not the torch engine trains data-parallel
(:mod:`cnnlab.train.distributed`). Frozen parameters (``trainer.freeze``) are in neither
engine's optimizer: they have no ``optim/`` state and no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cnnlab.backends import DEFAULT_OPTIONS, Backend, BackendOptions
from cnnlab.data.batches import Rows
from cnnlab.errors import UsageError
from cnnlab.ops.tree import Node
from cnnlab.train.distributed import SINGLE, Group
from cnnlab.train.draws import DeviceDraws, Draws, NumpyDraws
from cnnlab.train.feed import Feed, NumpyFeed, TorchFeed, to_device
from cnnlab.train.optim import clip_grad_norm

if TYPE_CHECKING:
    import torch

    from cnnlab.models import Instance
    from cnnlab.nn.numpy_net import NumpyNet
    from cnnlab.schema import OptimConfig


@dataclass(frozen=True)
class Step:
    """What one training step leaves, where the engine computed it (on a torch backend, 0-d
    tensors on its device, read only when :meth:`Engine.fetch` brings them over).

    Attributes:
        loss: the mean loss over the step's rows (0 for no rows).
        correct: how many of its rows the logits classify right.
        logits: (N, K) before the update.
    """

    loss: Any
    correct: Any
    logits: Any


class Engine(Protocol):
    """What the training loop needs from a backend.

    ``lazy`` engines (torch) leave a step's results on their device; the loop fetches them
    in one transfer at its log points, so that no step waits for the device.
    """

    lazy: bool
    net: Node

    def draws(self, seed: int) -> Draws:
        """Where the run's random numbers come from (``trainer.rng``)."""

    def feed(self, x: np.ndarray, y: np.ndarray) -> Feed:
        """A split where this engine computes (its device, for torch)."""

    def train_step(
        self,
        x: Any,
        y: Any,
        lr: float,
        rng: Any,
        rows: Rows | None = None,
    ) -> Step:
        """One step on a batch (from :meth:`feed`, or numpy arrays): forward, backward, update.

        rng: the dropout masks' generator (:meth:`Draws.dropout`); rows: which rows of the
        global batch x is, in a data-parallel run (None: all of it).
        """

    def fetch(self, steps: list[Step]) -> np.ndarray:
        """(len(steps), 2) float64: each step's loss and correct count, on the host."""

    def host(self, a: Any) -> np.ndarray:
        """An array of this engine's (a step's logits) as numpy."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits in eval mode (running statistics, no dropout), no gradients."""

    def activations(self, x: np.ndarray, names: Collection[str]) -> dict[str, np.ndarray]:
        """The outputs of the layers ``names`` (dotted names of chain children: ``relu1``,
        ``layer2``) for x: (N, C, H, W), in eval mode, by the backend's own forward pass."""

    def score_grad(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(N, C, H, W): the gradient of each row's logit of class ``y[i]`` with respect to its
        image ``x[i]``, in eval mode, by the backend's own backward pass (saliency maps). The
        parameters' gradients (:meth:`grads`) are left as the last step left them."""

    def params(self) -> dict[str, np.ndarray]:
        """Current parameters by name, to read: on numpy and on torch's CPU the arrays share
        memory with the live weights (a later step changes them); from a GPU they are copies."""

    def grads(self) -> dict[str, np.ndarray]:
        """The last step's gradients by name (frozen parameters have none)."""

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
        label_smoothing: float = 0.0,
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        from cnnlab.train.optim import NumpyOptimizer

        if group.world > 1:
            raise UsageError(f"backend={backend.name} trains in one process (trainer.devices=1)")
        self.net = net
        self.model: NumpyNet = backend.model(net, params, buffers, options)  # type: ignore[assignment]
        # Frozen parameters are not the optimizer's: no update, decay or state, as in torch.
        self.frozen = frozen
        trained = {k: p for k, p in self.model.params.items() if k not in frozen}
        self.optimizer = NumpyOptimizer(optim, trained)
        self.clip_norm = optim.clip_norm
        self.label_smoothing = label_smoothing
        self._grads: dict[str, np.ndarray] = {}

    lazy = False

    def draws(self, seed: int) -> Draws:
        return NumpyDraws(seed)

    def feed(self, x: np.ndarray, y: np.ndarray) -> Feed:
        return NumpyFeed(x, y)

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        rng: np.random.Generator,
        rows: Rows | None = None,
    ) -> Step:
        # A diverging run overflows in the loss and the update; the loop stops it on the
        # non-finite loss with one line, so numpy's warnings would only say the same, noisily.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, self._grads, logits = self.model.loss(
                x, y, True, rng, smoothing=self.label_smoothing
            )
            if self.frozen:  # their gradients are computed, then dropped (torch has none)
                self._grads = {k: g for k, g in self._grads.items() if k not in self.frozen}
            if self.clip_norm is not None:
                clip_grad_norm(self._grads, self.clip_norm)
            self.optimizer.step(self._grads, lr)
        return Step(loss, int(np.sum(logits.argmax(axis=1) == y)), logits)

    def fetch(self, steps: list[Step]) -> np.ndarray:
        return np.array([[s.loss, s.correct] for s in steps], np.float64).reshape(-1, 2)

    def host(self, a: np.ndarray) -> np.ndarray:
        return a

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(x, train=False)

    def activations(self, x: np.ndarray, names: Collection[str]) -> dict[str, np.ndarray]:
        return self.model.activations(x, names)

    def score_grad(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        logits = self.model.forward(x, train=False)
        dlogits = np.zeros_like(logits)
        dlogits[np.arange(len(y)), y] = 1.0
        return self.model.input_grad(dlogits)

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

    A step queues its work on the device and returns without waiting for it: inputs come from
    a :class:`TorchFeed` (or are copied in without blocking), loss and accuracy stay on the
    device (:class:`Step`) until :meth:`fetch`. ``options`` choose the precision (autocast for
    the mixed ones, with loss scaling for ``16-mixed``), the memory layout (channels_last), the
    random numbers' source (``rng``) and whether the net is compiled.

    In a data-parallel run (``group.world > 1``) the net is wrapped in DistributedDataParallel
    and its batch norm takes statistics over every rank's rows; names, state and predictions go
    through the bare net, so checkpoints have the keys of a single-process run.
    """

    lazy = True

    def __init__(
        self,
        backend: Backend,
        net: Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        optim: OptimConfig,
        group: Group = SINGLE,
        options: BackendOptions = DEFAULT_OPTIONS,
        label_smoothing: float = 0.0,
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        import torch

        from cnnlab.nn.torch_net import TorchNet
        from cnnlab.precision import Precision
        from cnnlab.train.optim import torch_optimizer

        backend.prepare(options)
        self.torch = torch
        self.net = net
        self.world = group.world
        self.options = options
        self.device = torch.device(group.place(backend.device))
        precision = Precision(options.precision)
        self.module = TorchNet(
            net,
            params,
            buffers,
            self.device,
            group.batch_sum(),
            autocast=precision.autocast_dtype(),
            channels_last=options.channels_last,
        )
        self.named = dict(self.module.named_parameters())
        # Frozen parameters get no gradient and are not the optimizer's (so no weight decay
        # either); set before DDP wraps the net, whose reducer takes only those that train.
        for name in frozen:
            self.named[name].requires_grad_(False)
        self.trained_names = [k for k in self.named if k not in frozen]
        self.trained = group.wrap(self.module)
        if options.compile:
            self.trained = torch.compile(self.trained)
        # float16's narrow exponent: the loss is scaled up for the backward pass, the
        # gradients down before the update (skipped where they overflowed). The fused CUDA
        # optimizers do the unscaling and the skip on the device; GradScaler would otherwise
        # read the overflow flag on the host every step.
        fused = precision.scaled and self.device.type == "cuda"
        params_trained = [self.named[k] for k in self.trained_names]
        self.optimizer = torch_optimizer(optim, params_trained, fused)
        self.clip_norm = optim.clip_norm
        self.label_smoothing = label_smoothing
        self.scaler = torch.amp.GradScaler(self.device.type) if precision.scaled else None

    def draws(self, seed: int) -> Draws:
        if self.options.rng == "device":
            return DeviceDraws(seed, self.device)
        return NumpyDraws(seed)

    def feed(self, x: np.ndarray, y: np.ndarray) -> Feed:
        return TorchFeed(x, y, self.device)

    def _tensor(self, a: Any) -> torch.Tensor:
        return to_device(a, self.device) if isinstance(a, np.ndarray) else a

    def train_step(
        self,
        x: Any,
        y: Any,
        lr: float,
        rng: Any,
        rows: Rows | None = None,
    ) -> Step:
        from cnnlab.kernels.torch import ops
        from cnnlab.train.optim import set_torch_lr

        torch = self.torch
        x, y = self._tensor(x), self._tensor(y)
        n = len(y)
        rows = Rows(0, n, n) if rows is None else rows
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        masks = self.module.masks(rng, tuple(x.shape[1:]), rows)
        with _compile_errors(self.options.compile):
            logits = self.trained(x, masks, rows)
        if n == 0:
            # A rank without rows (a last batch shorter than the ranks) still joins DDP's
            # gradient average, with zeros.
            loss = torch.zeros((), device=self.device)
            objective = logits.sum() * 0
        else:
            loss = objective = ops.softmax_cross_entropy(logits, y, self.label_smoothing)
            # DDP averages the ranks' gradients; weighting each rank's mean loss by its share
            # of the batch makes that the gradient of the whole batch's mean loss even when
            # shares differ (a short last batch). One process: the weight is exactly 1.
            weight = n * self.world / rows.total
            if weight != 1:
                objective = loss * weight
        set_torch_lr(self.optimizer, lr)
        with _compile_errors(self.options.compile):
            if self.scaler is None:
                objective.backward()
                self._clip()
                self.optimizer.step()
            else:
                self.scaler.scale(objective).backward()
                if self.clip_norm is not None:  # the norm of the true gradients, not scaled ones
                    self.scaler.unscale_(self.optimizer)
                    self._clip()
                self.scaler.step(self.optimizer)
                self.scaler.update()
        logits = logits.detach()
        correct = (logits.argmax(dim=1) == y).sum()
        return Step(loss.detach(), correct, logits)

    def _clip(self) -> None:
        """The gradients scaled to ``optim.clip_norm`` at most (no host read: the norm stays
        on the device)."""
        if self.clip_norm is not None:
            self.torch.nn.utils.clip_grad_norm_(self.named.values(), self.clip_norm)

    def fetch(self, steps: list[Step]) -> np.ndarray:
        torch = self.torch
        if not steps:
            return np.zeros((0, 2))
        losses = torch.stack([s.loss for s in steps]).double()
        correct = torch.stack([s.correct for s in steps]).double()
        return torch.stack([losses, correct], dim=1).cpu().numpy()

    def host(self, a: torch.Tensor) -> np.ndarray:
        return a.detach().cpu().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.module.eval()
        with self.torch.no_grad():
            return self.module(self._tensor(x)).cpu().numpy()

    def activations(self, x: np.ndarray, names: Collection[str]) -> dict[str, np.ndarray]:
        self.module.eval()
        with self.torch.no_grad():
            taps = self.module.activations(self._tensor(x), names)
        return {name: _host_float(t) for name, t in taps.items()}

    def score_grad(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        torch = self.torch
        self.module.eval()
        x_t = self._tensor(x).detach().clone().requires_grad_(True)
        y_t = self._tensor(np.asarray(y, np.int64))
        with torch.enable_grad():
            logits = self.module(x_t)
            # Rows are independent in eval mode: the sum's gradient is each row's own.
            score = logits.gather(1, y_t[:, None]).sum()
            (dx,) = torch.autograd.grad(score, x_t)
        return _host_float(dx)

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
        names = self.trained_names  # the optimizer's parameters, in its order
        for index, slots in self.optimizer.state_dict()["state"].items():
            for slot, value in slots.items():
                if value is not None:
                    state[f"optim/{names[index]}/{slot}"] = (
                        self.torch.as_tensor(value).cpu().numpy()
                    )
        if self.scaler is not None:
            state |= {f"scaler/{k}": np.asarray(v) for k, v in self.scaler.state_dict().items()}
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
        index = {name: i for i, name in enumerate(self.trained_names)}
        for key, value in _split(state, "optim/").items():
            name, slot = key.rsplit("/", 1)
            param = self.named[name]
            if slot == "step":  # Adam keeps its step count as a CPU tensor
                slots.setdefault(index[name], {})[slot] = torch.tensor(value)
                continue
            # A moment in its parameter's memory layout (channels_last), as the optimizer
            # would have made it.
            moment = torch.empty_like(param).copy_(torch.as_tensor(value))
            slots.setdefault(index[name], {})[slot] = moment
        saved = self.optimizer.state_dict()
        saved["state"] = slots
        self.optimizer.load_state_dict(saved)
        if self.scaler is not None:
            scaler = _split(state, "scaler/")
            if scaler:
                self.scaler.load_state_dict({k: v.item() for k, v in scaler.items()})


def _host_float(t: torch.Tensor) -> np.ndarray:
    """A tensor as numpy, a 16-bit one (autocast's) as float32, which numpy can hold."""
    if t.dtype.itemsize < 4:
        t = t.float()
    return t.detach().cpu().numpy()


@contextmanager
def _compile_errors(compiled: bool) -> Iterator[None]:
    """torch.compile's failures (no compiler, an unsupported op) as one line naming the
    switch, not a traceback; errors of the step itself pass through."""
    if not compiled:
        yield
        return
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        # The compiler's own error is wrapped (backend='inductor' raised: ...): name the root.
        root: BaseException = exc
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner
        text = str(root).strip()
        reason = f"{type(root).__name__}: {text.splitlines()[0]}" if text else type(root).__name__
        raise UsageError(f"trainer.compile=true: torch.compile failed here: {reason}") from None


ENGINES: dict[str, Callable[..., Engine]] = {"numpy": NumpyEngine, "torch": TorchEngine}


def make_engine(
    backend: Backend,
    model: Instance,
    optim: OptimConfig,
    group: Group = SINGLE,
    options: BackendOptions = DEFAULT_OPTIONS,
    label_smoothing: float = 0.0,
    frozen: frozenset[str] = frozenset(),
) -> Engine:
    """The engine of ``backend``'s framework, starting from ``model``'s parameters and
    buffers; group: this process's place in a data-parallel run (torch backends only);
    options: how the backend runs (threads, Winograd); label_smoothing: ε of the training
    loss (``trainer.label_smoothing``; evaluation does not smooth); frozen: parameters that
    no update changes (``trainer.freeze``)."""
    engine = ENGINES[backend.framework]
    return engine(
        backend,
        model.net,
        model.params,
        model.buffers,
        optim,
        group,
        options,
        label_smoothing=label_smoothing,
        frozen=frozen,
    )
