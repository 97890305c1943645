"""``cnnlab train``: train ``model`` on ``data`` with ``backend``, ``init``, ``norm`` and ``optim``.

Outputs in the run directory: train.log, metrics.jsonl, results.json, TensorBoard
events, checkpoints/last.npz and best.npz, and history.png. ``trainer.resume=<run dir or
checkpoint>`` continues a run in its own directory, with the configuration it was started with.
``backend=torch|cuda trainer.devices=N`` trains on N processes with DDP, started here or by
torchrun (:mod:`cnnlab.train.spawn`, :mod:`cnnlab.train.distributed`); rank 0 writes the
outputs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.config import Outcome
from cnnlab.errors import RunError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from cnnlab.backends import Backend, BackendOptions
    from cnnlab.data import Dataset
    from cnnlab.schema import TrainConfig
    from cnnlab.train.checkpoint import Checkpoint
    from cnnlab.train.distributed import Group
    from cnnlab.train.engine import Engine
    from cnnlab.train.loop import LoopState
    from cnnlab.train.loop import Outcome as LoopOutcome
    from cnnlab.train.metrics import Evaluation
    from cnnlab.train.tensorboard import TensorBoardWriter

log = logging.getLogger("cnnlab.train")


@dataclass(frozen=True)
class Plan:
    """What the check found: the backend and, with ``trainer.resume``, the checkpoint (read
    once) whose run continues, with the config it was started with."""

    backend: Backend
    resume: Checkpoint | None


def check_config(cfg: TrainConfig) -> Plan:
    """Everything that can be checked before data is read: a mistake is one line, exit 2."""
    from cnnlab.backends import get_backend
    from cnnlab.models import build_net
    from cnnlab.train.distributed import check

    resume = None
    if cfg.trainer.resume:
        from cnnlab.train.checkpoint import read

        resume = read(cfg.trainer.resume, "trainer.resume")
        cfg = resume.config  # the run's own config
    backend = get_backend(cfg.backend.name).require()
    # Checkpoints written before trainer.devices existed come from one process.
    check(int(cfg.trainer.get("devices", 1)), backend)
    build_net(cfg.model, cfg.norm, tuple(cfg.data.shape))
    return Plan(backend, resume)


def launch_overrides(cfg: TrainConfig, plan: Plan, multirun: bool) -> list[str]:
    """A resumed run continues in its original run directory (not a new one). Under torchrun,
    ranks other than 0 get no run directory or log file of their own: they write nothing."""
    from cnnlab.train.distributed import launched

    env = launched()
    if env is not None and env.world > 1:
        if multirun:
            raise UsageError("under torchrun, cnnlab train runs one job: sweep (-m) without it")
        if env.rank != 0:
            return ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none"]
    if plan.resume is None:
        return []
    if multirun:
        raise UsageError("trainer.resume continues one run; it cannot be swept with -m")
    return [f"hydra.run.dir={plan.resume.meta['run_dir']}"]


@dataclass(frozen=True)
class Job:
    """One training run as every rank receives it: plain data, none of Hydra's state (which a
    spawned process does not have).

    config: the composed config, resolved (no interpolations left); run_dir: where rank 0
    writes; resume: the checkpoint to continue from, or None; started: ``time.perf_counter()``
    at launch (one clock for every process of the machine).
    """

    config: dict
    run_dir: str
    resume: str | None
    started: float


def task(cfg: TrainConfig, plan: Plan | None = None) -> Outcome:
    """The Hydra task: train (on one process, or several with DDP), evaluate on test, write the
    outputs; returns the val accuracy."""
    from omegaconf import OmegaConf

    from cnnlab.config import run_dir
    from cnnlab.train import distributed
    from cnnlab.train.spawn import spawn

    started = time.perf_counter()
    plan = plan or check_config(cfg)
    backend, resume = plan.backend, plan.resume
    out_dir = str(run_dir())
    if resume is not None:
        cfg, out_dir = resume.config, resume.meta["run_dir"]
        log.info("resuming %s from %s (step %d)", out_dir, resume.path, resume.step)
    devices = int(cfg.trainer.get("devices", 1))
    path = str(resume.path) if resume is not None else None
    job = Job(OmegaConf.to_container(cfg, resolve=True), out_dir, path, started)
    if devices > 1 and distributed.launched() is None:
        # Each process reads the checkpoint itself.
        return spawn(train, devices, job, backend.device, _logging_config())
    with distributed.joined(backend.device) as group:
        # Under torchrun only rank 0 has a run directory (see launch_overrides).
        return train(replace(job, run_dir=group.broadcast(job.run_dir)), group, resume)


def _logging_config() -> dict | None:
    """This job's logging setup (Hydra's job_logging, file handler included) for rank 0."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True)
    return config if isinstance(config, dict) and "version" in config else None


def train(job: Job, group: Group, resume: Checkpoint | None = None) -> Outcome:
    """One rank's share of a training run (all of it in one process); returns the task's
    :class:`~cnnlab.config.Outcome`. resume: ``job.resume`` already read (else it is read
    here, as each spawned process does)."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.progress import Progress

    from cnnlab.backends import BackendOptions, get_backend
    from cnnlab.train.loop import Trainer
    from cnnlab.train.tensorboard import TensorBoardWriter

    cfg = OmegaConf.create(job.config)
    main, run_dir = group.main, Path(job.run_dir)
    options = BackendOptions(group.threads(cfg.trainer.threads), cfg.trainer.winograd)
    backend = get_backend(cfg.backend.name)
    data = _load_data(cfg, group)
    engine, loop = _start(cfg, data, backend, job, group, options, resume)
    tb = None
    if main:
        tb = TensorBoardWriter(run_dir, purge_step=loop.step if job.resume else None)
    trainer = Trainer(cfg, data, engine, run_dir, tb, loop, group)
    console = Console()
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    try:
        with Progress(*_columns(), console=console, transient=True, disable=not main) as bar:
            outcome = trainer.run(config_yaml, bar)
    finally:
        if tb is not None:
            tb.flush()
    loop.wall_s += time.perf_counter() - job.started
    # results.json's fields known now (rank 0 writes it).
    results = (
        _results(cfg, backend, data, loop, run_dir, outcome.status, options.threads, group)
        if main
        else {}
    )
    if outcome.status != "completed":
        return _stopped(outcome, results, loop, run_dir, tb, group)
    test = trainer.evaluate("test")
    if not main:
        return Outcome(0, None)
    per_class = {
        c: (None if math.isnan(a) else float(a))
        for c, a in zip(data.classes, test.per_class, strict=True)
    }
    results |= {
        "test_acc": test.acc,
        "test_loss": test.loss,
        "per_class_acc": per_class,
        "confusion": test.confusion.tolist(),
        "classes": data.classes,
    }
    trainer.record(
        "test", step=loop.step, test_loss=test.loss, test_acc=test.acc, per_class_acc=per_class
    )
    _write_results(run_dir, results)
    _finish_outputs(cfg, run_dir, tb, results, test, data, console)
    val_acc = loop.last_val.get("acc")
    return Outcome(0, val_acc if val_acc is not None else test.acc)


def _load_data(cfg: TrainConfig, group: Group) -> Dataset:
    """The run's data in its dtype. Rank 0 reads (and, if need be, downloads) it first; the
    other ranks read what it left."""
    from cnnlab.data import load as load_data

    if not group.main:
        group.barrier()
    data = load_data(cfg.data, int(cfg.trainer.seed), cfg.trainer.dtype)
    if group.main:
        group.barrier()
    return data


def _start(
    cfg: TrainConfig,
    data: Dataset,
    backend: Backend,
    job: Job,
    group: Group,
    options: BackendOptions,
    resume: Checkpoint | None,
) -> tuple[Engine, LoopState]:
    """The engine with its initial weights (drawn from the seed) or the checkpoint's state, and
    the loop's position: ``(engine, loop)``."""
    import numpy as np

    from cnnlab.models import INIT_STREAM, instantiate
    from cnnlab.train.checkpoint import read
    from cnnlab.train.engine import make_engine
    from cnnlab.train.loop import LoopState

    t = cfg.trainer
    in_shape = tuple(data.train.x.shape[1:])
    rng = np.random.default_rng([t.seed, INIT_STREAM])
    model = instantiate(cfg.model, cfg.norm, cfg.init, in_shape, rng, np.dtype(t.dtype))
    engine = make_engine(backend, model, cfg.optim, group, options)
    loop = LoopState()
    if job.resume is not None:
        resume = resume or read(job.resume, "trainer.resume")
        engine.load_state(resume.state)
        loop = LoopState(**resume.meta["loop"])
        if group.main:
            _truncate(Path(job.run_dir) / "metrics.jsonl", loop.metrics_lines)
    per_rank = f" on each of {group.world} processes" if group.world > 1 else ""
    log.info(
        "train %s (%s params) on %s: %d train / %d val / %d test images, backend=%s, "
        "optim=%s lr=%g, %d epochs of batch %d%s",
        cfg.model.name,
        f"{sum(p.size for p in model.params.values()):,}",
        data.name,
        len(data.train.y),
        len(data.val.y),
        len(data.test.y),
        backend.name,
        cfg.optim.name,
        cfg.optim.lr,
        t.epochs,
        t.batch_size,
        per_rank,
    )
    return engine, loop


def _columns() -> tuple:
    """The progress bar: epoch, bar, steps, loss and accuracy, images/s, time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.1%}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
    )


def _stopped(
    outcome: LoopOutcome,
    results: dict,
    loop: LoopState,
    run_dir: Path,
    tb: TensorBoardWriter | None,
    group: Group,
) -> Outcome:
    """A run that did not complete (interrupted or diverged): rank 0 writes what it has; the
    last checkpoint stays for trainer.resume."""
    if group.main:
        _write_results(run_dir, results)
        tb.close()
    # No rank ends (and looks failed to the parent) before rank 0 has written its outputs.
    group.barrier()
    if outcome.status == "diverged":
        if not group.main:
            return Outcome(1, None)  # rank 0 reports it
        raise RunError(outcome.message)
    if group.main:
        log.warning("%s; resume with trainer.resume=%s", outcome.message, run_dir)
    return Outcome(130, loop.last_val.get("acc"))


def _results(
    cfg: TrainConfig,
    backend: Backend,
    data: Dataset,
    loop: LoopState,
    run_dir: Path,
    status: str,
    threads: int | None,
    group: Group,
) -> dict:
    """results.json's fields known once training has ended."""
    from cnnlab.provenance import provenance

    return {
        "status": status,
        "model": cfg.model.name,
        "backend": backend.name,
        "data": data.name,
        "norm": cfg.norm.name,
        "init": cfg.init.name,
        "optim": cfg.optim.name,
        "devices": group.world,
        "batch_size": int(cfg.trainer.batch_size) * group.world,  # the global batch
        "epochs": loop.epoch,
        "steps": loop.step,
        "wall_s": loop.wall_s,
        "val_acc": loop.last_val.get("acc"),
        "val_loss": loop.last_val.get("loss"),
        "best_val_acc": loop.best_val_acc if loop.best_val_acc >= 0 else None,
        "train_loss": _last_train_loss(run_dir / "metrics.jsonl"),
        "images_per_s": _images_per_s(run_dir / "metrics.jsonl"),
        "provenance": provenance(threads, group.place(backend.device)),
    }


def _truncate(path: Path, lines: int) -> None:
    """Drop metrics.jsonl lines the interrupted session wrote after its checkpoint."""
    if path.exists():
        kept = path.read_text().splitlines(keepends=True)[:lines]
        path.write_text("".join(kept))


def _epochs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "epoch"]


def _last_train_loss(path: Path) -> float | None:
    epochs = _epochs(path)
    return epochs[-1]["train_loss"] if epochs else None


def _images_per_s(path: Path) -> float | None:
    epochs = _epochs(path)
    seconds = sum(r["time_s"] for r in epochs)
    images = sum(r["images_per_s"] * r["time_s"] for r in epochs)
    return images / seconds if seconds else None


def _write_results(run_dir: Path, results: dict) -> None:
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))


def _finish_outputs(
    cfg: TrainConfig,
    run_dir: Path,
    tb: TensorBoardWriter,
    results: dict,
    test: Evaluation,
    data: Dataset,
    console: Console,
) -> None:
    """The summary a user reads at the end: console tables, plot, TensorBoard hparams."""
    from cnnlab.train.metrics import confusion_table
    from cnnlab.train.plot import plot_history

    console.print(confusion_table(test, data.classes, f"Test confusion matrix ({data.name})"))
    plot_history(_epochs(run_dir / "metrics.jsonl"), run_dir / "history.png")
    hparams = {
        "model": cfg.model.name,
        "backend": results["backend"],
        "norm": cfg.norm.name,
        "init": cfg.init.name,
        "optim": cfg.optim.name,
        "lr": float(cfg.optim.lr),
        "batch_size": int(cfg.trainer.batch_size),
        "devices": int(results["devices"]),
        "epochs": int(cfg.trainer.epochs),
        "seed": int(cfg.trainer.seed),
    }
    metrics = {"hparams/test_acc": results["test_acc"]}
    if results["val_acc"] is not None:
        metrics["hparams/val_acc"] = results["val_acc"]
    tb.hparams(hparams, metrics)
    tb.close()
    log.info(
        "test accuracy %.2f%% (val %s) after %d epochs, %d steps, %.1f s, %.0f images/s; "
        "outputs in %s",
        100 * results["test_acc"],
        "–" if results["val_acc"] is None else f"{100 * results['val_acc']:.2f}%",
        results["epochs"],
        results["steps"],
        results["wall_s"],
        results["images_per_s"] or 0,
        run_dir,
    )
