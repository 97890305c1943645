"""The training loop, written once for every backend.

Every random draw is derived from ``trainer.seed`` and the loop position (epoch, batch): the
data order from (seed, epoch), augmentation from (seed, epoch, batch, 1) and dropout masks from
(seed, epoch, batch, 2) (:mod:`cnnlab.train.draws`). So the same seed gives the same batches and
masks on every backend, and a run resumed from a checkpoint (which stores the position, the
running sums of the epoch in progress and the engine state) continues exactly as if it had
never stopped.

A torch engine's steps leave their loss and accuracy on its device; the loop brings them over
at log points only (every ``trainer.log_every`` steps, see :func:`log_interval`; at
checkpoints, at the end of an epoch and when stopped), so no step waits for the device. A
loss that went non-finite is found there and the run stopped, naming the step it happened at.

Data-parallel runs (:mod:`cnnlab.train.distributed`) run this loop in every rank over global
batches of ``devices * trainer.batch_size`` rows, each rank training on its shard; at each log
point the loop sums the steps' losses and counts over the ranks and agrees on when to stop (a
signal stops every rank at the next log point), and it evaluates each split in shards. Only
rank 0 writes metrics.jsonl, TensorBoard events and checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.data import Dataset
from cnnlab.data.augment import Augmentation
from cnnlab.data.batches import Rows
from cnnlab.train import checkpoint
from cnnlab.train.distributed import SINGLE, Group
from cnnlab.train.engine import Engine, Step
from cnnlab.train.feed import take_batch
from cnnlab.train.metrics import Evaluation, evaluate
from cnnlab.train.monitor import Monitor
from cnnlab.train.optim import learning_rate

if TYPE_CHECKING:
    from cnnlab.schema import TrainConfig

log = logging.getLogger("cnnlab.train")


def log_interval(log_every: int | None, total_steps: int) -> int:
    """Steps between the per-step TensorBoard points: ``trainer.log_every``, or (None) about
    100 points over the run and never more than 50 steps apart, so that a short run draws
    curves, not a few dots."""
    return int(log_every) if log_every else max(1, min(50, total_steps // 100))


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint.

    The running sums cover the epoch in progress, so that a run resumed mid-epoch reports the
    same epoch metrics as one that never stopped.
    """

    epoch: int = 0  # the epoch in progress (0-based)
    position: int = 0  # batches of that epoch already done
    step: int = 0  # global steps done
    loss_sum: float = 0.0  # sum over the epoch's samples of the training loss
    correct: int = 0
    seen: int = 0
    train_s: float = 0.0  # seconds in training steps this epoch (for images/s)
    best_val_acc: float = -1.0
    # The watched value's best so far, epochs since it last improved (by more than
    # trainer.min_delta), the kept best checkpoints' [value, epoch], best first
    # (cnnlab.train.monitor), and the epoch an early stop came at.
    best: float | None = None
    stale: int = 0
    top: list = field(default_factory=list)
    stopped_early: int | None = None
    metrics_lines: int = 0  # lines of metrics.jsonl that belong to the run up to here
    wall_s: float = 0.0  # wall time of the sessions before this one
    last_val: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Pending:
    """A step whose loss and count are still where the engine computed them.

    number: the global step it was (1-based); position: its batch in the epoch (0-based);
    rows: this rank's rows of it; seen: the whole batch's rows (every rank's).
    """

    step: Step
    number: int
    position: int
    rows: int
    seen: int


@dataclass
class Outcome:
    """How a run ended."""

    status: str  # completed, interrupted or diverged
    state: LoopState
    message: str = ""


class StopSignal:
    """Turns SIGINT/SIGTERM into a request to stop after the current step.

    A second signal stops at once (KeyboardInterrupt), for a user who does not want to wait.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextmanager
    def installed(self):  # noqa: ANN201 - a context manager
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._handle) for s in handled}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class Trainer:
    """Runs the epochs of one training run and writes its outputs into ``run_dir``.

    Args:
        cfg: the composed config (trainer, data, optim, model, ...).
        data: the loaded splits.
        engine: the backend's engine, already holding the initial (or resumed) state.
        run_dir: where metrics.jsonl, checkpoints/ and the TensorBoard events go.
        tb: a TensorBoardWriter (None on ranks other than 0).
        state: where to start (a fresh LoopState, or the one from a checkpoint).
        group: this process's place in a data-parallel run (one process by default).
        started: ``time.perf_counter()`` at the start of this session (default: now); the
            checkpoints' wall time counts from it.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: Dataset,
        engine: Engine,
        run_dir: Path,
        tb: Any,
        state: LoopState,
        group: Group = SINGLE,
        started: float | None = None,
    ) -> None:
        self.cfg, self.data, self.engine, self.run_dir, self.tb = cfg, data, engine, run_dir, tb
        # time.perf_counter() when this session started (the process's launch, in train).
        self.started = time.perf_counter() if started is None else started
        self.state, self.group = state, group
        t = cfg.trainer
        # trainer.batch_size is per process; the ranks together take a batch this big.
        self.seed, self.batch_size = int(t.seed), int(t.batch_size) * group.world
        self.steps_per_epoch = math.ceil(len(data.train.y) / self.batch_size)
        total = t.epochs * self.steps_per_epoch
        self.total_steps = min(total, t.max_steps) if t.max_steps else total
        self.metrics_path = run_dir / "metrics.jsonl"
        self.stop = StopSignal()
        self.monitor = Monitor.of(t)
        # Ranks stop at the same step: the signal one of them received, once all agree on it.
        self.agreed_stop: int | None = None
        # The step of the last checkpoint this session saved (None: none yet), for messages.
        self.saved_step: int | None = None
        self.draws = engine.draws(self.seed)
        self.feed = engine.feed(data.train.x, data.train.y)
        # Steps not yet brought to the host, and the seconds spent queueing them. An engine
        # that computes on the host is read every step (it costs nothing); a lazy one only at
        # log points, so that its device never waits for the host.
        self.pending: list[_Pending] = []
        self.pending_s = 0.0
        self.log_every = log_interval(t.log_every, self.total_steps)
        self.sync_every = self.log_every if engine.lazy else 1

    # -- outputs -----------------------------------------------------------------------------

    def record(self, kind: str, **values: Any) -> None:
        """Append one JSON line to metrics.jsonl (rank 0; every rank counts the line)."""
        if self.group.main:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps({"kind": kind, **values}) + "\n")
        self.state.metrics_lines += 1

    def save(self, name: str, config_yaml: str) -> Path | None:
        """Checkpoint ``name`` (rank 0 writes it; the ranks hold the same state). None, and
        nothing written, under ``trainer.checkpoints=false``."""
        # .get: configs saved before trainer.checkpoints existed lack it.
        if not self.cfg.trainer.get("checkpoints", True):
            return None
        path = self.run_dir / "checkpoints" / f"{name}.npz"
        if self.group.main:
            # The wall time so far, this session's included: a run killed after this
            # checkpoint and resumed still counts the time it spent.
            loop = asdict(self.state) | {"wall_s": self.state.wall_s + self._session_s()}
            meta = {
                "loop": loop,
                "config": config_yaml,
                "run_dir": str(self.run_dir),
                "inputs": self.data.inputs.record(),
            }
            checkpoint.save(path, self.engine.state(), meta)
        if name == "last":
            self.saved_step = self.state.step
        return path

    def _session_s(self) -> float:
        return time.perf_counter() - self.started

    def evaluate(self, split: str) -> Evaluation:
        """Loss, accuracy and confusion matrix over a split (in eval mode).

        Ranks of a data-parallel run each evaluate a contiguous shard and sum the results.
        """
        s = getattr(self.data, split)
        size, K = int(self.cfg.trainer.eval_batch_size), len(self.data.classes)
        if self.group.world == 1:
            return evaluate(self.engine, s.x, s.y, size, K)
        rows = self.group.shard(len(s.y))
        part = evaluate(self.engine, s.x[rows.slice], s.y[rows.slice], size, K)
        loss_sum = part.loss * len(rows) if len(rows) else 0.0
        total = self.group.sum(np.concatenate([[loss_sum], part.confusion.ravel()]))
        confusion = np.rint(total[1:]).astype(np.int64).reshape(K, K)
        count = int(confusion.sum())
        if count == 0:
            return Evaluation(float("nan"), float("nan"), confusion)
        return Evaluation(float(total[0]) / count, float(np.trace(confusion)) / count, confusion)

    def _stop_requested(self) -> int | None:
        """The signal to stop for, if any: at once in one process; in several, only once every
        rank knows (from the last log point's sum), so that all stop at the same step."""
        return self.stop.signum if self.group.world == 1 else self.agreed_stop

    @cached_property
    def augmentation(self) -> Augmentation | None:
        """What is done to the training batches (data.augment, data.transforms); None: nothing."""
        return Augmentation.of(self.cfg.data, self.data.mean, self.data.std)

    def _augment_samples(self, count: int = 32) -> None:
        """At the start of a fresh run, the first ``count`` images of its first batch as its
        first step gets them, augmented, in one TensorBoard image (augment/samples, step 0)."""
        from cnnlab.train.tensorboard import sample_grid

        if self.augmentation is None or self.state.step > 0 or not self.group.main:
            return
        order = self.feed.place(self.draws.order(len(self.data.train.y), 0))
        total = min(self.batch_size, len(order))
        rows = Rows(0, min(count, total), total)
        x, _ = take_batch(self.feed, self.draws, self.augmentation, order[:total], 0, 0, rows)
        x = x if isinstance(x, np.ndarray) else x.float().cpu().numpy()
        self.tb.image("augment/samples", sample_grid(x, self.data.mean, self.data.std), 0)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, config_yaml: str, progress: Any) -> Outcome:
        """Train until the epochs (or trainer.max_steps) are done, a signal, or a NaN loss."""
        t, s = self.cfg.trainer, self.state
        self._augment_samples()
        with self.stop.installed():
            while s.epoch < t.epochs and s.step < self.total_steps and not s.stopped_early:
                outcome = self._epoch(config_yaml, progress)
                if outcome is not None:
                    return outcome
        if s.stopped_early:
            m = self.monitor
            return Outcome(
                "completed",
                s,
                f"stopped early after epoch {s.stopped_early}: {m.key} has not improved by more "
                f"than {m.min_delta:g} for {m.patience} epochs (best {s.best:.4f})",
            )
        return Outcome("completed", s)

    def _epoch(self, config_yaml: str, progress: Any) -> Outcome | None:
        t, s = self.cfg.trainer, self.state
        n = len(self.data.train.y)
        order = self.feed.place(self.draws.order(n, s.epoch))
        batches = math.ceil(n / self.batch_size)
        seen = max(s.seen, 1)
        task = progress.add_task(
            f"epoch {s.epoch + 1}/{t.epochs}",
            total=batches,
            completed=s.position,
            loss=s.loss_sum / seen,
            acc=s.correct / seen,
            ips=0.0,
        )
        every = int(t.checkpoint_every_steps or 0)
        while s.position < batches and s.step < self.total_steps:
            stop = self._stop_requested()
            if stop is not None:
                outcome = self._sync(progress, task)
                progress.remove_task(task)
                if outcome is not None:
                    return outcome
                path = self.save("last", config_yaml)
                name = signal.Signals(stop).name
                kept = (
                    "no checkpoint (trainer.checkpoints=false)" if path is None else f"saved {path}"
                )
                return Outcome("interrupted", s, f"{name}: stopped at step {s.step}; {kept}")
            start = s.position * self.batch_size
            index = order[start : start + self.batch_size]
            # This rank's rows of the global batch (all of them in one process); augmentation
            # and dropout draw for the whole batch and keep these rows.
            rows = self.group.shard(len(index))
            x, y = take_batch(
                self.feed, self.draws, self.augmentation, index, s.epoch, s.position, rows
            )
            lr = learning_rate(self.cfg.optim, s.step, self.steps_per_epoch, self.total_steps)
            dropout = self.draws.dropout(s.epoch, s.position)
            began = time.perf_counter()
            step = self.engine.train_step(x, y, lr, dropout, rows)
            self.pending_s += time.perf_counter() - began
            self.pending.append(_Pending(step, s.step + 1, s.position, len(rows), len(index)))
            s.position += 1
            s.step += 1
            progress.update(task, advance=1)
            save = every and s.step % every == 0
            if save or s.step % self.sync_every == 0:
                outcome = self._sync(progress, task)
                if outcome is not None:
                    progress.remove_task(task)
                    return outcome
            if save:
                self.save("last", config_yaml)
        outcome = self._sync(progress, task)
        progress.remove_task(task)
        if outcome is not None:
            return outcome
        self._end_epoch(config_yaml)
        return None

    def _sync(self, progress: Any, task: Any) -> Outcome | None:
        """A log point: bring the steps since the last one to the host (the loop's one wait
        for a lazy engine's device), add them to the epoch's sums (over every rank), log them,
        and stop a run whose loss went non-finite at the step where it did."""
        s, pending = self.state, self.pending
        self.pending = []
        began = time.perf_counter()
        values = self.engine.fetch([p.step for p in pending])
        losses, correct = values[:, 0], values[:, 1]
        loss_sums = losses * np.array([p.rows for p in pending], np.float64)
        if self.group.world > 1:
            k = len(pending)
            stop = 0.0 if self.stop.signum is None else 1.0
            total = self.group.sum(np.concatenate([loss_sums, correct, [stop]]))
            loss_sums, correct = total[:k], total[k : 2 * k]
            losses = loss_sums / np.array([max(p.seen, 1) for p in pending], np.float64)
            if total[-1] > 0 and self.agreed_stop is None:
                self.agreed_stop = self.stop.signum or signal.SIGTERM
        s.train_s += self.pending_s + time.perf_counter() - began
        self.pending_s = 0.0
        for p, loss, loss_sum, right in zip(pending, losses, loss_sums, correct, strict=True):
            loss = float(loss)
            if not math.isfinite(loss):
                # The state of the step before it, as a loop that stopped there would hold.
                s.step, s.position = p.number - 1, p.position
                return self._diverged(loss)
            s.loss_sum += float(loss_sum)
            s.correct += int(np.rint(right))
            s.seen += p.seen
            if p.number % self.log_every == 0 and self.group.main:
                acc = float(right) / max(p.seen, 1)
                self.tb.scalars({"train/loss_step": loss, "train/acc_step": acc}, p.number)
        seen = max(s.seen, 1)
        progress.update(
            task,
            loss=s.loss_sum / seen,
            acc=s.correct / seen,
            ips=s.seen / max(s.train_s, 1e-9),
        )
        return None

    def _diverged(self, loss: float) -> Outcome:
        """A non-finite loss: stop, naming the checkpoint there is to go back to, if any."""
        s = self.state
        stopped = f"loss became {loss} at step {s.step + 1} (epoch {s.epoch + 1}); stopped"
        kept = self._kept_checkpoint()
        if kept is None:
            message = f"{stopped} before any checkpoint was saved (try a lower optim.lr)"
        else:
            message = f"{stopped} (try a lower optim.lr); {kept}"
        return Outcome("diverged", s, message)

    def _kept_checkpoint(self) -> str | None:
        """What says which checkpoint a stopped run keeps, or None where it has none."""
        last = self.run_dir / "checkpoints" / "last.npz"
        if self.saved_step is not None:
            return f"the checkpoint of step {self.saved_step} is kept: {last}"
        if last.is_file():  # a resumed run's, saved by an earlier session
            return f"the last checkpoint is kept: {last}"
        return None

    def _end_epoch(self, config_yaml: str) -> None:
        """Validate, record and log the epoch, then checkpoint and watch (:meth:`_watch`)."""
        s = self.state
        val = self.evaluate("val")
        lr = learning_rate(
            self.cfg.optim, max(s.step - 1, 0), self.steps_per_epoch, self.total_steps
        )
        values = {
            "epoch": s.epoch + 1,
            "step": s.step,
            "train_loss": s.loss_sum / s.seen,
            "train_acc": s.correct / s.seen,
            "val_loss": None if math.isnan(val.loss) else val.loss,
            "val_acc": None if math.isnan(val.acc) else val.acc,
            "lr": lr,
            "images_per_s": s.seen / max(s.train_s, 1e-9),
            "time_s": s.train_s,
        }
        self.record("epoch", **values)
        log.info(
            "epoch %d: train loss %.4f acc %.2f%% | val loss %s acc %s | %.0f images/s",
            s.epoch + 1,
            values["train_loss"],
            100 * values["train_acc"],
            "–" if values["val_loss"] is None else f"{values['val_loss']:.4f}",
            "–" if values["val_acc"] is None else f"{100 * values['val_acc']:.2f}%",
            values["images_per_s"],
        )
        if self.group.main:
            self._tensorboard(values)
        s.last_val = {"loss": values["val_loss"], "acc": values["val_acc"]}
        acc = values["val_acc"] if values["val_acc"] is not None else values["train_acc"]
        s.best_val_acc = max(s.best_val_acc, acc)
        s.epoch, s.position = s.epoch + 1, 0
        s.loss_sum, s.correct, s.seen, s.train_s = 0.0, 0, 0, 0.0
        self._watch(self.monitor.value(values), config_yaml)

    def _watch(self, value: float, config_yaml: str) -> None:
        """After an epoch (``state.epoch`` just counted it): checkpoint it as ``last``, among
        the best and every ``checkpoint_every_epochs``, and decide on an early stop
        (:mod:`cnnlab.train.monitor`)."""
        t, s, m = self.cfg.trainer, self.state, self.monitor
        if m.better(value, s.best, m.min_delta):
            s.stale = 0
        else:
            s.stale += 1
        if m.better(value, s.best):
            s.best = value
        if m.patience is not None and s.stale >= m.patience and s.epoch < t.epochs:
            s.stopped_early = s.epoch
        k = int(t.get("save_top_k", 1))
        pushed, s.top = s.top, m.ranked(s.top, value, s.epoch, k) if k else []
        kept = [int(epoch) for _, epoch in s.top]
        self.save("last", config_yaml)  # with the updated ranking, for a resume
        if kept[:1] == [s.epoch]:
            self.save("best", config_yaml)
        if k > 1:
            if s.epoch in kept:
                self.save(f"best-epoch={s.epoch:03d}", config_yaml)
            for epoch in {int(e) for _, e in pushed} - set(kept):
                if self.group.main:
                    path = self.run_dir / "checkpoints" / f"best-epoch={epoch:03d}.npz"
                    path.unlink(missing_ok=True)
        every = int(t.get("checkpoint_every_epochs", 0))
        if every and s.epoch % every == 0:
            self.save(f"epoch={s.epoch:03d}", config_yaml)

    def _tensorboard(self, values: dict[str, Any]) -> None:
        from cnnlab.train.tensorboard import filter_grid, first_conv

        step = values["step"]
        scalars = {
            "train/loss": values["train_loss"],
            "train/acc": values["train_acc"],
            "lr": values["lr"],
            "images_per_s": values["images_per_s"],
        }
        if values["val_acc"] is not None:
            scalars |= {"val/loss": values["val_loss"], "val/acc": values["val_acc"]}
        self.tb.scalars(scalars, step)
        params, grads = self.engine.params(), self.engine.grads()
        for name, value in params.items():
            self.tb.histogram(f"weights/{name}", value, step)
        for name, value in grads.items():
            self.tb.histogram(f"grads/{name}", value, step)
        filters = first_conv(params)
        if filters is not None:
            self.tb.image("filters/first_conv", filter_grid(filters), step)
        self.tb.flush()
