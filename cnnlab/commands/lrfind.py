"""``cnnlab lrfind``: the learning-rate range test (:mod:`cnnlab.train.lrfind`) on ``model``,
``data``, ``optim`` and ``backend`` as ``cnnlab train`` sets them up.

Outputs in the run directory: lrfind.json (the rates, losses, smoothed losses, suggestion and
where the sweep stopped), lrfind.png (loss against rate) and lrfind.log.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cnnlab.errors import RunError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from cnnlab.commands.train import Plan
    from cnnlab.schema import LRFindConfig
    from cnnlab.train.lrfind import Sweep

log = logging.getLogger("cnnlab.lrfind")


def check_config(cfg: LRFindConfig) -> Plan:
    """train's checks (backend, its switches, data, model, ``trainer.init_from``), and what a
    sweep cannot do: continue a run, or run on several processes."""
    from cnnlab.commands import train

    if cfg.trainer.resume:
        raise UsageError(
            "trainer.resume: lrfind starts from fresh weights drawn from trainer.seed "
            "(trainer.init_from=<run> starts from a run's weights)"
        )
    if int(cfg.trainer.devices) != 1:
        raise UsageError("trainer.devices: lrfind runs in one process; use trainer.devices=1")
    return train.check_config(cfg)


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """``logger``'s INFO lines dropped for a while (warnings still pass)."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def task(cfg: LRFindConfig, plan: Plan | None = None) -> int:
    """The Hydra task: the sweep under a progress bar, lrfind.json and lrfind.png; prints the
    suggested rate (exit 1, outputs written, where there is none)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cnnlab.backends import BackendOptions
    from cnnlab.commands import train
    from cnnlab.config import run_dir
    from cnnlab.data.augment import Augmentation
    from cnnlab.train.distributed import SINGLE
    from cnnlab.train.lrfind import (
        RULE,
        SKIP_END,
        large_start,
        plot_sweep,
        run_sweep,
        sweep_lrs,
    )

    started = time.perf_counter()
    plan = plan or check_config(cfg)
    out = run_dir()
    t, s = cfg.trainer, cfg.lrfind
    options = BackendOptions.of(t, cfg.user, SINGLE.threads(t.threads))
    data = train._load_data(cfg, SINGLE)
    job = train.Job({}, str(out), None, started)
    # _start's summary line is train's (epochs, the scheduled lr); this command says its own.
    with _quiet(train.log):
        engine, _, _ = train._start(
            cfg, data, plan.backend, job, SINGLE, options, None, plan.init_from
        )
    lrs = sweep_lrs(float(s.min_lr), float(s.max_lr), int(s.steps))
    log.info(
        "lrfind %s on %s, backend=%s, optim=%s: %d steps of batch %d, lr %g to %g geometrically "
        "(optim.lr, its schedule and warm-up are not used)",
        cfg.model.name,
        data.name,
        plan.backend.name,
        cfg.optim.name,
        len(lrs),
        int(t.batch_size),
        lrs[0],
        lrs[-1],
    )
    columns = (
        TextColumn("lrfind"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lr {task.fields[lr]:.2e} smoothed loss {task.fields[loss]:.4f}"),
    )
    with Progress(*columns, transient=True) as bar:
        task_id = bar.add_task("lrfind", total=len(lrs), lr=lrs[0], loss=math.nan)

        def advance(i: int, lr: float, loss: float, smoothed: float) -> None:
            bar.update(task_id, completed=i + 1, lr=lr, loss=smoothed)

        sweep = run_sweep(
            engine,
            data.train,
            lrs,
            int(t.batch_size),
            int(t.seed),
            float(s.smoothing),
            float(s.diverge),
            Augmentation.of(cfg.data, data.mean, data.std),
            advance,
        )
    wall_s = time.perf_counter() - started
    title = f"lrfind: {cfg.model.name} on {data.name}, {cfg.optim.name}, batch {int(t.batch_size)}"
    plot_sweep(sweep, out / "lrfind.png", title)
    _write_json(out / "lrfind.json", sweep, cfg, plan.backend.name, len(data.classes), wall_s)
    if sweep.stopped_at is not None:
        i = sweep.stopped_at
        why = (
            f"smoothed loss {sweep.smoothed[i]:.4g} > {float(s.diverge):g} x its lowest"
            if sweep.reason == "diverged"
            else f"loss {sweep.losses[i]}"
        )
        log.info("stopped at step %d of %d, lr %.3g: %s", i + 1, len(lrs), sweep.lrs[i], why)
    lr = sweep.suggested_lr
    if lr is None:
        raise RunError(
            f"no suggestion: the smoothed loss does not fall over the steps the rule reads "
            f"({len(sweep.lrs)} run, lr {sweep.lrs[0]:.3g} to {sweep.lrs[-1]:.3g}; the first "
            f"tenth and the last {SKIP_END} before a stop left out); widen lrfind.min_lr to "
            f"lrfind.max_lr or give more lrfind.steps; see {out / 'lrfind.png'}"
        )
    log.info("suggested lr %.3g (%s); outputs in %s", lr, RULE, out)
    doubt = large_start(float(sweep.losses[0]), len(data.classes))
    if doubt is not None:
        log.warning("%s", doubt)
    return 0


def _finite(values: Iterable[float]) -> list[float | None]:
    """Values for JSON, which has no NaN or infinity: those are null."""
    return [float(v) if math.isfinite(v) else None for v in values]


def _write_json(
    path: Path, sweep: Sweep, cfg: LRFindConfig, backend: str, classes: int, wall_s: float
) -> None:
    from omegaconf import OmegaConf

    from cnnlab.train.lrfind import RULE, SKIP_END

    record = {
        "suggestion": sweep.suggested_lr,
        "suggestion_step": sweep.suggestion,
        "rule": f"{RULE}, before the stop, less the first tenth of the steps and the last "
        f"{SKIP_END}",
        "stopped_at": sweep.stopped_at,
        "stop_reason": sweep.reason,
        "lowest_loss_lr": None if sweep.lowest is None else float(sweep.lrs[sweep.lowest]),
        "first_loss": _finite(sweep.losses[:1])[0],
        "chance_loss": math.log(classes),
        "lrfind": OmegaConf.to_container(cfg.lrfind, resolve=True),
        "model": str(cfg.model.name),
        "data": str(cfg.data.name),
        "backend": backend,
        "optim": str(cfg.optim.name),
        "batch_size": int(cfg.trainer.batch_size),
        "seed": int(cfg.trainer.seed),
        "wall_s": wall_s,
        "lrs": [float(v) for v in sweep.lrs],
        "losses": _finite(sweep.losses),
        "smoothed": _finite(sweep.smoothed),
    }
    path.write_text(json.dumps(record, indent=1))
