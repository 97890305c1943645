"""``cnnlab bench model``: one full training step (forward, backward, update) of ``model=``.

Each backend gets an engine (:func:`cnnlab.train.engine.make_engine`) from the same initial
weights and batch; its first step's logits are checked against torch's (in the true precision
of the run's dtype: a mixed precision is judged by its own tolerance), then steps are timed.
``fwd_s`` is an eval-mode forward (``predict``), ``fwdbwd_s`` the whole training step, and
``images_per_s`` the batch size over it. After the timed steps come the per-layer profile
(``layers``: :mod:`cnnlab.bench.profile`) and the step's peak memory (``peak_mem_bytes``:
:mod:`cnnlab.bench.memory`), each in steps of its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.backends import Backend, BackendOptions
from cnnlab.bench.memory import STEPS as MEMORY_STEPS
from cnnlab.bench.memory import peak_memory
from cnnlab.bench.profile import profile_layers
from cnnlab.bench.run import Context, failed, record
from cnnlab.bench.timing import measure, once
from cnnlab.compare import rel_error
from cnnlab.precision import Precision

if TYPE_CHECKING:
    from cnnlab.models import Instance
    from cnnlab.schema import BenchConfig, BenchSettings
    from cnnlab.train.engine import Engine


class ModelBench:
    """The model, its initial state and a batch, shared by every backend."""

    def __init__(self, cfg: BenchConfig, model: Instance, options: BackendOptions) -> None:
        from cnnlab.ops.tree import summarize

        self.cfg = cfg
        self.model = model
        self.shape = model.in_shape
        self.batch = int(cfg.bench.batch or cfg.trainer.batch_size)
        self.summary = summarize(model.net, self.shape)
        self.flops = float(self.summary["total_flops"])
        self.dtype = Precision(options.precision).dtype
        self.options = options
        self._ref: dict[int, np.ndarray] = {}
        self._batches: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def batch_of(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The same ``n`` images and labels for every backend, drawn once (not timed)."""
        if n not in self._batches:
            rng = np.random.default_rng(self.cfg.trainer.seed + 1)
            x = rng.standard_normal((n, *self.shape)).astype(self.dtype)
            y = rng.integers(0, int(self.cfg.model.num_classes), size=n)
            self._batches[n] = (x, y)
        return self._batches[n]

    def engine(self, backend: Backend, options: BackendOptions | None = None) -> Engine:
        from cnnlab.train.engine import make_engine

        return make_engine(backend, self.model, self.cfg.optim, options=options or self.options)

    def step(self, engine: Engine, n: int) -> np.ndarray:
        """One training step on ``n`` images; its logits (before the update) on the host."""
        x, y = self.batch_of(n)
        # A fixed numpy generator per step: dropout masks match across backends.
        step = engine.train_step(x, y, float(self.cfg.optim.lr), np.random.default_rng(0))
        return engine.host(step.logits)

    def reference(self, n: int) -> np.ndarray:
        """torch's (CPU) logits of the first training step on ``n`` images, in the true
        precision of the run's dtype, in NCHW layout and not compiled: the plain reference."""
        if n not in self._ref:
            from cnnlab.backends import get_backend

            true = Precision(self.options.precision).reference.value
            plain = replace(self.options, precision=true, channels_last=False, compile=False)
            self._ref[n] = self.step(self.engine(get_backend("torch"), plain), n)
        return self._ref[n]


def bench_model(ctx: Context, mb: ModelBench, backend: Backend) -> dict[str, Any]:
    """Check the first step's logits against torch, time training steps, then profile them
    layer by layer (``bench.profile_steps``) and measure their peak memory (``bench.memory``)."""
    s = ctx.settings
    name = mb.cfg.model.name
    row = dict(case=name, variant="train step", backend=backend.name, batch=mb.batch)
    reason = ctx.options.unusable(backend)
    if reason is not None:
        return record(ctx, **row, status="skipped", skipped=True, reason=reason)
    tolerance = ctx.tolerance()[0]
    if backend.name == "naive":
        probe = max(1, min(int(s.naive_probe_batch), mb.batch))
        engine = mb.engine(backend)
        per_step = once(lambda: mb.step(engine, probe)) * mb.batch / probe
        total = per_step * (1 + (s.warmup + s.runs) * max(s.repeats, 1) + _extra_steps(s))
        row["naive_estimate_s"] = per_step
        if total > s.naive_budget_s:
            error = rel_error(mb.step(mb.engine(backend), probe), mb.reference(probe))
            if error > tolerance:
                return failed(ctx, row, error, f"at batch {probe}")
            why = f"estimated {total:.3g} s > bench.naive_budget_s={s.naive_budget_s:g}"
            return record(
                ctx, **row, status="skipped", skipped=True, reason=why, max_rel_error=error
            )
    engine = mb.engine(backend)
    error = rel_error(mb.step(engine, mb.batch), mb.reference(mb.batch))
    if error > tolerance:
        return failed(ctx, row, error, "")
    x, _ = mb.batch_of(mb.batch)
    dev = backend.device
    fwd = measure(lambda: engine.predict(x), s.warmup, s.runs, s.repeats, dev)
    step = measure(lambda: mb.step(engine, mb.batch), s.warmup, s.runs, s.repeats, dev)
    flops = 3 * mb.flops * mb.batch
    gflops = flops / step.median / 1e9
    layers = None
    # Compiled, the step is fused graphs with no layers left to time.
    if s.profile_steps and not ctx.options.compile:
        layers = profile_layers(mb, engine, dev, s.profile_steps)
    # A user's layers run in their own worker process, outside the RSS that is measured.
    memory = s.memory and backend.name != "user"
    return record(
        ctx,
        **row,
        fwd_s=fwd.median,
        fwdbwd_s=step.median,
        fwdbwd_min_s=step.low,
        fwdbwd_max_s=step.high,
        flops=flops,
        gflops=gflops,
        roofline_frac=gflops / ctx.roofline_gflops,
        images_per_s=mb.batch / step.median,
        max_rel_error=error,
        peak_mem_bytes=peak_memory(mb, backend) if memory else None,
        layers=layers,
    )


def _extra_steps(s: BenchSettings) -> int:
    """Steps after the timed ones: the profile's, and the memory measurement's."""
    return s.profile_steps + (MEMORY_STEPS if s.memory else 0)
