"""``bench model``'s per-layer profile: where a training step's time goes, leaf by leaf.

After the timed steps, ``bench.profile_steps`` more steps run with a timer in the executor
(``NumpyNet.timer``, ``TorchNet.timer``; None in every other step, so the timed steps run as
training does). Each leaf's forward and backward are timed; what no leaf runs (the loss, the
optimizer's update, dropout's masks, the containers' kernels such as residual sums, the
executor's own work) is the ``(other)`` row, the step's time less the leaves', so the shares
add up to the step. Each figure is the median over the profiled steps.

numpy: the executor calls each leaf's kernels through the timer. A layer that runs inside a
fused one (``im2col``'s ReLU inside the conv before it) has no time of its own: its row says
which layer's row holds it. torch: the forward op
likewise; autograd runs the backward, on one thread per device, node by node in the reverse
of the order the forward made them, so a leaf's backward is one stretch of time. It starts
when the gradient of the leaf's output arrives (a hook on the output) and ends at the first of:
its input's gradient arriving, the last of its parameters' gradients being computed (the net's
first layer computes no input gradient), the next leaf starting. On CUDA every mark waits for
the device (``torch.cuda.synchronize``): the profiled steps are slower, their shares honest.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from cnnlab.bench.timing import sync_for
from cnnlab.ops import kind_of
from cnnlab.ops.tree import leaves

if TYPE_CHECKING:
    from torch import Tensor
    from torch.utils.hooks import RemovableHandle

    from cnnlab.bench.model import ModelBench
    from cnnlab.nn.torch_net import TorchNet
    from cnnlab.train.engine import Engine

R = TypeVar("R")

# The row of what no leaf runs; parentheses keep it apart from any layer's dotted name.
OTHER = "(other)"


class _Clock:
    """Seconds per leaf in one step, forward and backward."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.fwd: dict[str, float] = defaultdict(float)
        self.bwd: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.fwd.clear()
        self.bwd.clear()

    def _timed(self, into: dict[str, float], name: str, call: Callable[[], R]) -> R:
        self.sync()
        start = time.perf_counter()
        out = call()
        self.sync()
        into[name] += time.perf_counter() - start
        return out


class KernelClock(_Clock):
    """numpy's :class:`~cnnlab.nn.numpy_net.LayerTimer`: times each leaf's kernels."""

    def forward(self, name: str, call: Callable[[], R]) -> R:
        return self._timed(self.fwd, name, call)

    def backward(self, name: str, call: Callable[[], R]) -> R:
        return self._timed(self.bwd, name, call)


class AutogradClock(_Clock):
    """torch's :class:`~cnnlab.nn.torch_net.LayerTimer`: times each leaf's op, and its
    backward from hooks on the tensors (the module's docstring gives the rule).

    The hooks on parameters stay until :meth:`detach` (a parameter keeps its hooks from step
    to step); those on activations go with each step's graph.
    """

    def __init__(self, module: TorchNet, sync: Callable[[], None]) -> None:
        super().__init__(sync)
        self._params: dict[str, int] = defaultdict(int)
        self._done: dict[str, int] = defaultdict(int)
        self._current: str | None = None
        self._since = 0.0
        self._handles: list[RemovableHandle] = []
        for dotted, p in module.named_parameters():
            leaf = dotted.rsplit(".", 1)[0]
            self._params[leaf] += 1
            self._handles.append(p.register_hook(self._param_hook(leaf)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        super().reset()
        self._current = None

    def forward(self, name: str, x: Tensor, call: Callable[[], Tensor]) -> Tensor:
        out = self._timed(self.fwd, name, call)
        self._done[name] = 0
        if out.requires_grad:
            out.register_hook(lambda grad: self._mark(name, start=True))
        if x.requires_grad:
            x.register_hook(lambda grad: self._mark(name, start=False))
        return out

    def _param_hook(self, leaf: str) -> Callable[[Tensor], None]:
        def hook(grad: Tensor) -> None:
            self._done[leaf] += 1
            if self._done[leaf] == self._params[leaf]:
                self._mark(leaf, start=False)

        return hook

    def _mark(self, name: str, start: bool) -> None:
        """Leaf ``name``'s backward starts (its output's gradient is here) or ends. Any mark
        closes the stretch since the last one, which belongs to the leaf running in it, if
        any; an end only stops the leaf it names (a shared input's gradient comes late)."""
        self.sync()
        now = time.perf_counter()
        if self._current is not None:
            self.bwd[self._current] += now - self._since
        self._since = now
        if start:
            self._current = name
        elif self._current == name:
            self._current = None


@contextmanager
def _clock_on(engine: Engine, device: str) -> Iterator[_Clock]:
    """The engine's executor with a clock in it, for the length of the block."""
    from cnnlab.train.engine import NumpyEngine, TorchEngine

    sync = sync_for(device)
    if isinstance(engine, NumpyEngine):
        clock = KernelClock(sync)
        engine.model.timer = clock
        try:
            yield clock
        finally:
            engine.model.timer = None
        return
    assert isinstance(engine, TorchEngine)
    autograd = AutogradClock(engine.module, sync)
    engine.module.timer = autograd
    try:
        yield autograd
    finally:
        engine.module.timer = None
        autograd.detach()


def profile_layers(mb: ModelBench, engine: Engine, device: str, steps: int) -> list[dict[str, Any]]:
    """The per-layer profile of ``steps`` training steps of ``engine`` on ``mb``'s batch.

    Returns:
        One row per leaf of the model in execution order, then the ``(other)`` row: ``name``,
        ``kind`` (its registered kind), ``layer`` (its label; both None for other), ``fwd_s``,
        ``bwd_s``, ``total_s`` (their sum; other's only figure), ``share`` of the step and
        ``gflops``: 3x the leaf's forward FLOPs over ``total_s`` (None where no FLOPs are
        counted). Times are medians over the steps; shares are of the sum of the rows'.
    """
    sync = sync_for(device)
    profiled: list[tuple[float, dict[str, float], dict[str, float]]] = []
    with _clock_on(engine, device) as clock:
        for _ in range(max(steps, 1)):
            clock.reset()
            sync()
            start = time.perf_counter()
            mb.step(engine, mb.batch)
            sync()
            profiled.append((time.perf_counter() - start, dict(clock.fwd), dict(clock.bwd)))
    kinds = {leaf.name: kind_of(leaf.layer).name for leaf in leaves(mb.model.net, mb.shape)}
    # Layers a numpy executor runs inside others (torch's engine has no such model).
    absorbed: dict[str, str] = getattr(getattr(engine, "model", None), "absorbed", {})
    rows = []
    for layer in mb.summary["layers"]:
        name = layer["name"]
        if name in absorbed:
            label = f"{layer['layer']} (fused into {absorbed[name]})"
            rows.append(_row(name, kinds[name], label, None, None, 0.0, None))
            continue
        f = statistics.median(fwd.get(name, 0.0) for _, fwd, _ in profiled)
        b = statistics.median(bwd.get(name, 0.0) for _, _, bwd in profiled)
        flops = 3 * layer["flops"] * mb.batch
        gflops = flops / (f + b) / 1e9 if flops and f + b else None
        rows.append(_row(name, kinds[name], layer["layer"], f, b, f + b, gflops))
    other = statistics.median(
        total - sum(fwd.values()) - sum(bwd.values()) for total, fwd, bwd in profiled
    )
    rows.append(_row(OTHER, None, None, None, None, other, None))
    whole = sum(r["total_s"] for r in rows)
    for r in rows:
        r["share"] = r["total_s"] / whole
    return rows


def _row(
    name: str,
    kind: str | None,
    layer: str | None,
    fwd_s: float | None,
    bwd_s: float | None,
    total_s: float,
    gflops: float | None,
) -> dict[str, Any]:
    row = dict(name=name, kind=kind, layer=layer, fwd_s=fwd_s, bwd_s=bwd_s, total_s=total_s)
    return row | {"share": None, "gflops": gflops}  # share: of all rows' sum, filled after
