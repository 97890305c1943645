"""The learning-rate range test (Smith, 2017; fastai's ``lr_find``): train from fresh weights
with a rate that grows geometrically, one optimizer step per batch, and read a good rate off
the loss curve.

The sweep's rates are ``lr_i = min_lr·(max_lr/min_lr)^(i/(steps − 1))`` for ``i = 0 … steps − 1``
(:func:`sweep_lrs`); ``optim``'s own schedule and warm-up are not applied. Each batch's loss is
smoothed by a bias-corrected exponential moving average with factor ``β`` (:class:`Smoother`):

    ``a_i = β·a_{i−1} + (1 − β)·loss_i``,  ``a_{−1} = 0``,  ``smoothed_i = a_i / (1 − β^(i+1))``

The sweep stops at the first step whose loss is not finite or whose smoothed loss exceeds
``diverge`` times the lowest smoothed loss so far (:func:`run_sweep`). The suggested rate is
where the smoothed loss falls fastest against ``log lr`` (:func:`steepest`): the minimum of
``d smoothed / d log lr`` (centred differences, ``np.gradient``) over the steps before the one
that stopped the sweep, less the first tenth of the planned steps (where the average has seen
few batches) and the last :data:`SKIP_END` (where the loss turns up), as fastai does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data.batches import Rows
from cnnlab.train.feed import take_batch

if TYPE_CHECKING:
    from cnnlab.data import Split
    from cnnlab.data.augment import Augmentation
    from cnnlab.train.engine import Engine

# Steps before the end of the curve (the last finite one) that the suggestion leaves out.
SKIP_END = 5

RULE = "steepest descent of the smoothed loss against log lr"


# A first loss above this many times chance's, ln K, flags the suggestion as doubtful.
LARGE_START = 2.0


def large_start(first_loss: float, classes: int) -> str | None:
    """Why the suggestion may be too low, where the untrained model's loss is more than
    :data:`LARGE_START` times chance's (``ln K`` for ``K`` classes); None otherwise.

    Logits that start large (a wide initialisation through max pools, say) make the loss fall
    steeply at small rates while they shrink, before anything is learned; the steepest descent
    of the smoothed loss is then that fall.
    """
    chance = math.log(classes)
    if not first_loss > LARGE_START * chance:
        return None
    return (
        f"the first loss, {first_loss:.3g}, is {first_loss / chance:.1f}x chance's "
        f"(ln {classes} = {chance:.3g}): the logits start large, and the steepest descent may "
        "be their shrinking rather than learning, so the suggestion may be too low; look at "
        "lrfind.png, or start from smaller weights (init=xavier)"
    )


def sweep_lrs(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """(steps,) float64: ``min_lr`` to ``max_lr`` geometrically, both ends exact."""
    if not 0 < min_lr < max_lr or steps < 2:
        raise ValueError(
            f"need 0 < min_lr < max_lr and steps >= 2, got {min_lr}, {max_lr}, {steps}"
        )
    return np.geomspace(min_lr, max_lr, steps)


class Smoother:
    """The bias-corrected exponential moving average of a loss, one value at a time
    (``beta`` 0: no smoothing)."""

    def __init__(self, beta: float) -> None:
        self.beta, self.average, self.count = beta, 0.0, 0

    def add(self, loss: float) -> float:
        """The smoothed loss once ``loss`` is added."""
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * loss
        return self.average / (1 - self.beta**self.count)


def smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """(n,) the smoothed losses of :class:`Smoother`, for a whole curve."""
    smoother = Smoother(beta)
    return np.array([smoother.add(float(loss)) for loss in losses], np.float64)


def steepest(lrs: np.ndarray, smoothed: np.ndarray, skip_start: int, end: int) -> int | None:
    """The index of the steepest descent of ``smoothed`` against ``log lrs`` among indices
    ``skip_start`` to ``end − SKIP_END − 1``; None where fewer than 3 points remain or the
    curve does not fall there.

    Args:
        lrs: (n,) the rates, increasing.
        smoothed: (n,) the smoothed losses.
        skip_start: the first index considered.
        end: where the usable curve ends (the step that stopped the sweep, or n).
    """
    stop = end - SKIP_END
    if stop - skip_start < 3:
        return None
    window = slice(skip_start, stop)
    slope = np.gradient(smoothed[window], np.log(lrs[window]))
    best = int(np.argmin(slope))
    if not slope[best] < 0:  # also refuses NaN
        return None
    return skip_start + best


@dataclass(frozen=True)
class Sweep:
    """A finished sweep.

    Attributes:
        lrs: (k,) the rates stepped with, k <= steps (fewer where it stopped).
        losses: (k,) each step's batch loss (the last non-finite, where that stopped it).
        smoothed: (k,) the smoothed losses.
        stopped_at: the index of the step that stopped the sweep, None if every step ran.
        reason: why it stopped: ``"diverged"`` or ``"not finite"`` (None if it did not).
        suggestion: the index of the suggested rate (:func:`steepest`), or None.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped_at: int | None
    reason: str | None
    suggestion: int | None

    @property
    def suggested_lr(self) -> float | None:
        return None if self.suggestion is None else float(self.lrs[self.suggestion])

    @property
    def lowest(self) -> int | None:
        """The index of the lowest smoothed loss before the sweep stopped (None: none is
        finite)."""
        end = len(self.lrs) if self.stopped_at is None else max(self.stopped_at, 1)
        head = self.smoothed[:end]
        finite = np.isfinite(head)
        return int(np.argmin(np.where(finite, head, np.inf))) if finite.any() else None


def run_sweep(
    engine: Engine,
    train: Split,
    lrs: np.ndarray,
    batch_size: int,
    seed: int,
    beta: float,
    diverge: float,
    augmentation: Augmentation | None = None,
    on_step: Callable[[int, float, float, float], None] | None = None,
) -> Sweep:
    """One optimizer step per batch of ``train`` at each rate of ``lrs``, in the training
    loop's order: the epoch's permutation and each batch's augmentation and dropout drawn from
    ``seed`` and the position (:mod:`cnnlab.train.draws`), so every backend sees the same
    batches; past the end of the split, a new epoch. Each loss is read at once (the stop
    needs it), which on a GPU waits for each step.

    Args:
        engine: the engine, holding the starting weights and a fresh optimizer state.
        train: the training split.
        lrs: (steps,) the rates, one per step (:func:`sweep_lrs`).
        batch_size: images per step.
        seed: ``trainer.seed``.
        beta: the smoothing factor ``β``.
        diverge: stop once the smoothed loss exceeds this times its lowest value so far.
        augmentation: what is done to the training batches (None: nothing).
        on_step: called after each step with its index, rate, loss and smoothed loss.
    """
    draws = engine.draws(seed)
    feed = engine.feed(train.x, train.y)
    n = len(train.y)
    per_epoch = math.ceil(n / batch_size)
    smoother = Smoother(beta)
    losses: list[float] = []
    smoothed: list[float] = []
    best = math.inf
    order = None
    stopped_at, reason = None, None
    for i, lr in enumerate(lrs):
        epoch, position = divmod(i, per_epoch)
        if position == 0:
            order = feed.place(draws.order(n, epoch))
        index = order[position * batch_size : (position + 1) * batch_size]
        rows = Rows(0, len(index), len(index))
        x, y = take_batch(feed, draws, augmentation, index, epoch, position, rows)
        step = engine.train_step(x, y, float(lr), draws.dropout(epoch, position), rows)
        loss = float(engine.fetch([step])[0, 0])
        value = smoother.add(loss)
        losses.append(loss)
        smoothed.append(value)
        if on_step is not None:
            on_step(i, float(lr), loss, value)
        if not math.isfinite(loss):
            stopped_at, reason = i, "not finite"
            break
        if value > diverge * best:
            stopped_at, reason = i, "diverged"
            break
        best = min(best, value)
    k = len(losses)
    lrs_done = np.asarray(lrs[:k], np.float64)
    smoothed_done = np.array(smoothed, np.float64)
    end = k if stopped_at is None else stopped_at
    suggestion = steepest(lrs_done, smoothed_done, len(lrs) // 10, end)
    return Sweep(
        lrs_done, np.array(losses, np.float64), smoothed_done, stopped_at, reason, suggestion
    )


def plot_sweep(sweep: Sweep, path: str | Path, title: str = "") -> None:
    """Writes a PNG of the loss against the rate (log axis): each batch's loss, the smoothed
    loss, the suggested rate and where the sweep stopped. The y axis stops a little above the
    smoothed curve before the stop, so that the blow-up does not flatten the rest."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(sweep.lrs, sweep.losses, color="C0", alpha=0.3, linewidth=1, label="batch loss")
    ax.plot(sweep.lrs, sweep.smoothed, color="C0", linewidth=2, label="smoothed")
    if sweep.suggestion is not None:
        lr = sweep.suggested_lr
        ax.axvline(lr, color="C3", linestyle="--", linewidth=1)
        ax.plot(
            [lr],
            [sweep.smoothed[sweep.suggestion]],
            "o",
            color="C3",
            label=f"suggested lr {lr:.3g} ({RULE})",
        )
    if sweep.stopped_at is not None:
        ax.axvline(
            sweep.lrs[sweep.stopped_at],
            color="grey",
            linestyle=":",
            label=f"stopped: loss {sweep.reason}",
        )
    end = len(sweep.lrs) if sweep.stopped_at is None else max(sweep.stopped_at, 1)
    shown = np.concatenate([sweep.smoothed[:end], sweep.losses[:end]])
    shown = shown[np.isfinite(shown)]
    if shown.size:
        top = float(np.max(sweep.smoothed[:end][np.isfinite(sweep.smoothed[:end])]))
        low = float(np.min(shown))
        ax.set_ylim(max(low - 0.05 * (top - low), 0.0), top + 0.25 * (top - low) + 1e-9)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
