"""``cnnlab train``: train ``model`` on ``data`` with ``backend``, ``init``, ``norm`` and ``optim``.

Outputs in the run directory: train.log, metrics.jsonl, results.json, TensorBoard
events, checkpoints/last.npz and best.npz, history.png and filters.png, and what the run
learned in pictures of the test split (misclassified.png, confusion.png, saliency.png,
activations/<layer>.png: :mod:`cnnlab.train.diagnostics`). ``trainer.resume=<run dir or
checkpoint>`` continues a run in its own directory, with the configuration it was started with;
``trainer.init_from=<run dir or checkpoint>`` starts a new run from a checkpoint's weights, with
``trainer.freeze`` and ``trainer.reinit`` (:mod:`cnnlab.train.transfer`).
``backend=torch|cuda trainer.devices=N`` trains on N processes with DDP, started here or by
torchrun (:mod:`cnnlab.train.spawn`, :mod:`cnnlab.train.distributed`); rank 0 writes the
outputs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.config import Outcome
from cnnlab.errors import RunError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from cnnlab.backends import Backend, BackendOptions
    from cnnlab.config import Claim
    from cnnlab.data import Dataset
    from cnnlab.schema import TrainConfig
    from cnnlab.train.checkpoint import Checkpoint
    from cnnlab.train.distributed import Group
    from cnnlab.train.engine import Engine
    from cnnlab.train.loop import LoopState, Trainer
    from cnnlab.train.loop import Outcome as LoopOutcome
    from cnnlab.train.metrics import Evaluation
    from cnnlab.train.tensorboard import TensorBoardWriter

log = logging.getLogger("cnnlab.train")


@dataclass(frozen=True)
class Plan:
    """What the check found: the backend and, with ``trainer.resume``, the checkpoint (read
    once and checked against its model), the resumed run's config (its own, with the changes
    allowed) and the run directory it continues in (None: a new one, for a loose file); with
    ``trainer.init_from``, the checkpoint whose weights a new run starts from (read once)."""

    backend: Backend
    resume: Checkpoint | None = None
    config: TrainConfig | None = None
    run_dir: Path | None = None
    init_from: Checkpoint | None = None


def check_config(cfg: TrainConfig) -> Plan:
    """Everything that can be checked before data is read: a mistake is one line, exit 2
    (1 for a checkpoint that cannot be used)."""
    from cnnlab.backends import get_backend
    from cnnlab.data import check_config as check_data
    from cnnlab.models import build_net
    from cnnlab.train.distributed import check
    from cnnlab.train.transfer import check as check_transfer

    if cfg.trainer.resume:
        if cfg.trainer.init_from:
            raise UsageError(
                "trainer.init_from starts a new run from a checkpoint's weights, trainer.resume "
                "continues a run: give one of them"
            )
        return _check_resume(cfg)
    backend = get_backend(cfg.backend.name).require()
    _check_options(cfg, backend)
    check(int(cfg.trainer.devices), backend)
    check_data(cfg.data)
    in_shape = tuple(cfg.data.shape)
    net = build_net(cfg.model, cfg.norm, in_shape, act=cfg.act)
    return Plan(backend, init_from=check_transfer(cfg.trainer, net, in_shape, cfg.model.name))


def _check_resume(cfg: TrainConfig) -> Plan:
    from cnnlab.backends import get_backend
    from cnnlab.data import check_config as check_data
    from cnnlab.train.checkpoint import model_of, read
    from cnnlab.train.distributed import check
    from cnnlab.train.resume import resumed_config, run_dir_of

    resume = read(cfg.trainer.resume, "trainer.resume")
    run = resumed_config(cfg, resume)
    model_of(resume, run)
    check_data(run.data)
    backend = get_backend(run.backend.name).require()
    _check_options(run, backend)
    # Checkpoints written before trainer.devices existed come from one process.
    check(int(run.trainer.get("devices", 1)), backend)
    return Plan(backend, resume, run, run_dir_of(resume))


def _check_options(cfg: TrainConfig, backend: Backend) -> None:
    """The precision and torch switches (``trainer.channels_last``, ...) that ``backend`` can
    run with: numpy has no autocast, the CPU no float16 autocast; and label smoothing, which a
    user's loss cannot do."""
    from cnnlab.backends import BackendOptions

    why = BackendOptions.of(cfg.trainer, cfg.get("user")).unsupported(backend)
    if why is not None:
        raise UsageError(f"backend={backend.name}: {why}")
    smoothing = cfg.trainer.get("label_smoothing", 0.0)
    if smoothing and backend.name == "user":
        # The file's softmax_loss(x, y) takes hard labels; smoothing added by cnnlab would
        # train on cnnlab's loss, not the file's.
        raise UsageError(
            f"backend=user: trainer.label_smoothing={smoothing}: your softmax_loss(x, y) "
            "takes hard labels only; use trainer.label_smoothing=0"
        )


def claim(cfg: TrainConfig, plan: Plan, multirun: bool) -> Claim:
    """Take the run directory before Hydra writes into it: pinned (``hydra.run.dir``) and
    locked for this process; one that holds another run is refused unless
    ``trainer.overwrite``. A resumed run continues in its own directory. Under torchrun, ranks
    other than 0 get no run directory or log file of their own: they write nothing."""
    from cnnlab.config import Claim, quoted
    from cnnlab.rundir import RunLock, clear, holds_run
    from cnnlab.train.distributed import launched

    env = launched()
    if env is not None and env.world > 1:
        if multirun:
            raise UsageError("under torchrun, cnnlab train runs one job: sweep (-m) without it")
        if env.rank != 0:
            return Claim(["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none"])
    if multirun:
        if plan.resume is not None:
            raise UsageError("trainer.resume continues one run; it cannot be swept with -m")
        return Claim([])
    run_dir = (plan.run_dir or Path(str(cfg.hydra.run.dir))).expanduser().absolute()
    lock = RunLock(run_dir)
    try:
        if plan.run_dir is None and holds_run(run_dir):
            if not cfg.trainer.overwrite:
                raise UsageError(
                    f"hydra.run.dir: {run_dir} already holds a run; continue it with "
                    f"trainer.resume={run_dir}, or replace it with trainer.overwrite=true"
                )
            clear(run_dir)
    except BaseException:
        lock.release()
        raise
    overrides = [f"hydra.run.dir={quoted(str(run_dir))}"]
    if plan.run_dir is not None:  # the run's own .hydra/ record stays as it started
        overrides.append("hydra.output_subdir=null")
    return Claim(overrides, lock)


@dataclass(frozen=True)
class Job:
    """One training run as every rank receives it: plain data, none of Hydra's state (which a
    spawned process does not have).

    config: the composed config, resolved (no interpolations left); run_dir: where rank 0
    writes; resume: the checkpoint to continue from, or None; started: ``time.perf_counter()``
    at launch (one clock for every process of the machine); name: the run's name
    (:func:`cnnlab.runs.naming.run_name`, made from Hydra's overrides, which a spawned process
    cannot read; empty: made from the config alone).
    """

    config: dict
    run_dir: str
    resume: str | None
    started: float
    name: str = ""


def _absolute_paths(config: dict) -> dict:
    """The run's config with its data folder (and ``trainer.init_from``) absolute, so that
    eval or a resume started from another working directory finds the files."""
    root = config["data"].get("root")
    if root:
        config["data"]["root"] = str(Path(root).expanduser().absolute())
    source = config["trainer"].get("init_from")
    if source:
        config["trainer"]["init_from"] = str(Path(source).expanduser().absolute())
    return config


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
    if resume is not None and plan.config is not None:
        cfg = plan.config
        log.info("resuming %s from %s (step %d)", out_dir, resume.path, resume.step)
    devices = int(cfg.trainer.get("devices", 1))
    path = str(resume.path) if resume is not None else None
    config = _absolute_paths(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    job = Job(config, out_dir, path, started, _run_name(cfg, plan))
    if devices > 1 and distributed.launched() is None:
        # Each process reads the checkpoint itself.
        return spawn(train, devices, job, backend.device, _logging_config())
    with distributed.joined(backend.device) as group:
        # Under torchrun only rank 0 has a run directory (see claim).
        job = replace(job, run_dir=group.broadcast(job.run_dir))
        return train(job, group, resume, plan.init_from)


def _run_name(cfg: TrainConfig, plan: Plan) -> str:
    """The run's name from its model, backend and the user's overrides; a resumed run keeps
    the one its run directory (or, for a loose checkpoint, the directory it was saved in)
    already has."""
    from hydra.core.hydra_config import HydraConfig

    from cnnlab.runs.naming import run_name, stored_name

    if plan.resume is not None:
        saved_in = plan.resume.meta.get("run_dir")
        origin = plan.run_dir or (Path(saved_in) if saved_in else None)
        kept = stored_name(origin) if origin is not None else None
        if kept:
            return kept
    # A task called outside Hydra (as a library) has no overrides to name it by.
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return run_name(str(cfg.model.name), str(cfg.backend.name), overrides)


def _logging_config() -> dict | None:
    """This job's logging setup (Hydra's job_logging, file handler included) for rank 0."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True)
    return config if isinstance(config, dict) and "version" in config else None


def train(
    job: Job, group: Group, resume: Checkpoint | None = None, source: Checkpoint | None = None
) -> Outcome:
    """One rank's share of a training run, as :func:`_train`; rank 0 keeps the run's status
    in run.json from its start to its end, however it ends (:mod:`cnnlab.runs.status`)."""
    if not group.main:
        return _train(job, group, resume, source)
    from cnnlab.runs.status import tracked

    return tracked(Path(job.run_dir), _name(job), lambda: _train(job, group, resume, source))


def _name(job: Job) -> str:
    """The run's name: the one the task gave the job, else (a job made without Hydra, as a
    library call makes it) its model and backend alone."""
    from cnnlab.runs.naming import run_name

    return job.name or run_name(job.config["model"]["name"], job.config["backend"]["name"], ())


def _train(
    job: Job, group: Group, resume: Checkpoint | None = None, source: Checkpoint | None = None
) -> Outcome:
    """One rank's share of a training run (all of it in one process); returns the task's
    :class:`~cnnlab.config.Outcome`. resume: ``job.resume`` already read, and source:
    ``trainer.init_from`` already read (else they are read here, as each spawned process
    does)."""
    from omegaconf import OmegaConf
    from rich.console import Console

    from cnnlab.backends import BackendOptions, get_backend
    from cnnlab.train.loop import Trainer
    from cnnlab.train.tensorboard import TensorBoardWriter

    cfg = OmegaConf.create(job.config)
    main, run_dir = group.main, Path(job.run_dir)
    options = BackendOptions.of(cfg.trainer, cfg.user, group.threads(cfg.trainer.threads))
    backend = get_backend(cfg.backend.name)
    data = _load_data(cfg, group)
    engine, loop, weights = _start(cfg, data, backend, job, group, options, resume, source)
    tb = None
    if main:
        tb = TensorBoardWriter(run_dir, purge_step=loop.step if job.resume else None)
    trainer = Trainer(cfg, data, engine, run_dir, tb, loop, group, job.started)
    console = Console()
    outcome = _run(trainer, OmegaConf.to_yaml(cfg, resolve=True), console, tb)
    loop.wall_s += time.perf_counter() - job.started
    # results.json's fields known now (rank 0 writes it).
    results = {}
    if main:
        results = _results(
            cfg, backend, data, loop, run_dir, outcome.status, options.threads, group
        )
        results["resumed_from"] = job.resume
        results["name"] = _name(job)
        results |= weights
    if outcome.status != "completed":
        return _stopped(outcome, cfg, results, loop, run_dir, tb, group)
    if outcome.message and main:  # an early stop
        log.info("%s", outcome.message)
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
    _plot_filters(trainer.engine.params(), run_dir / "filters.png")
    _diagnostics(trainer.engine, data, test, run_dir, tb, loop.step)
    _finish_outputs(cfg, run_dir, tb, results, test, data, console)
    val_acc = loop.last_val.get("acc")
    return Outcome(0, val_acc if val_acc is not None else test.acc)


def _run(
    trainer: Trainer, config_yaml: str, console: Console, tb: TensorBoardWriter | None
) -> LoopOutcome:
    """The training loop under a progress bar; an output that cannot be written (a full disk)
    ends the run as ``failed``, its last good checkpoint intact (checkpoints are written to a
    temporary file first)."""
    from rich.progress import Progress

    from cnnlab.train.loop import Outcome as LoopOutcome

    try:
        hidden = not trainer.group.main
        with Progress(*_columns(), console=console, transient=True, disable=hidden) as bar:
            return trainer.run(config_yaml, bar)
    except OSError as exc:
        what = exc.filename or "an output"
        message = f"could not write {what}: {exc.strerror or exc}; stopped at step "
        message += f"{trainer.state.step}, the last checkpoint written is kept"
        return LoopOutcome("failed", trainer.state, message)
    finally:
        if tb is not None:
            tb.flush()


def _load_data(cfg: TrainConfig, group: Group) -> Dataset:
    """The run's data in its precision's dtype. Rank 0 reads (and, if need be, downloads) it
    first; the other ranks read what it left."""
    from cnnlab.data import load as load_data
    from cnnlab.precision import Precision

    if not group.main:
        group.barrier()
    dtype = Precision(str(cfg.trainer.precision)).dtype
    data = load_data(cfg.data, int(cfg.trainer.seed), dtype)
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
    source: Checkpoint | None = None,
) -> tuple[Engine, LoopState, dict]:
    """The engine with its initial weights (drawn from the seed, then those ``trainer.init_from``
    loads) or the checkpoint's state, the loop's position, and results.json's record of where
    the weights came from (``frozen``, and ``init_from`` with it): ``(engine, loop, weights)``."""
    import numpy as np

    from cnnlab.models import INIT_STREAM, instantiate
    from cnnlab.precision import Precision
    from cnnlab.train.checkpoint import read
    from cnnlab.train.engine import make_engine
    from cnnlab.train.loop import LoopState
    from cnnlab.train.transfer import log_frozen, start

    t = cfg.trainer
    in_shape = tuple(data.train.x.shape[1:])
    rng = np.random.default_rng([t.seed, INIT_STREAM])
    dtype = Precision(str(t.precision)).dtype
    act = cfg.get("act")  # runs from before act= have none: ReLU
    model = instantiate(cfg.model, cfg.norm, cfg.init, in_shape, rng, dtype, act=act)
    frozen, transfer = start(t, model, source, resuming=job.resume is not None)
    weights = {"frozen": [k for k in model.params if k in frozen]}
    if transfer is not None:
        weights["init_from"] = transfer
    log_frozen(frozen, model.params)
    # Runs from before trainer.label_smoothing have none: 0.
    smoothing = float(t.get("label_smoothing", 0.0))
    engine = make_engine(
        backend, model, cfg.optim, group, options, label_smoothing=smoothing, frozen=frozen
    )
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
    return engine, loop, weights


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
    cfg: TrainConfig,
    results: dict,
    loop: LoopState,
    run_dir: Path,
    tb: TensorBoardWriter | None,
    group: Group,
) -> Outcome:
    """A run that did not complete (interrupted, diverged, or failed to write): rank 0 writes
    what it still can; the last checkpoint stays for trainer.resume."""
    if group.main:
        try:
            _write_results(run_dir, results)
            tb.close()
            status = "unknown" if outcome.status == "interrupted" else "failure"
            _hparams_session(cfg, run_dir, results, status)
        except OSError:  # the disk that stopped the run: the one-line error says so
            pass
    # No rank ends (and looks failed to the parent) before rank 0 has written its outputs.
    group.barrier()
    if outcome.status in ("diverged", "failed"):
        if not group.main:
            return Outcome(1, None)  # rank 0 reports it
        raise RunError(outcome.message)
    if group.main:
        resumable = (run_dir / "checkpoints" / "last.npz").is_file()
        hint = f"; resume with trainer.resume={run_dir}" if resumable else ""
        log.warning("%s%s", outcome.message, hint)
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
        "act": _act_name(cfg),
        "init": cfg.init.name,
        "optim": cfg.optim.name,
        "precision": str(cfg.trainer.precision),
        "channels_last": bool(cfg.trainer.channels_last),
        "compile": bool(cfg.trainer.compile),
        "rng": str(cfg.trainer.rng),
        "devices": group.world,
        "batch_size": int(cfg.trainer.batch_size) * group.world,  # the global batch
        "epochs": loop.epoch,
        "steps": loop.step,
        "wall_s": loop.wall_s,
        "val_acc": loop.last_val.get("acc"),
        "val_loss": loop.last_val.get("loss"),
        "best_val_acc": loop.best_val_acc if loop.best_val_acc >= 0 else None,
        # What trainer.monitor watched: its best value, and the epoch an early stop came at.
        "monitor": {"key": str(cfg.trainer.get("monitor", "val_acc")), "best": loop.best},
        "stopped_early": loop.stopped_early,
        "train_loss": _last_train_loss(run_dir / "metrics.jsonl"),
        "images_per_s": _images_per_s(run_dir / "metrics.jsonl"),
        "provenance": provenance(threads, group.place(backend.device)),
    }


def _act_name(cfg: TrainConfig) -> str:
    act = cfg.get("act")
    return "relu" if act is None else str(act.name)


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


# The final metrics of the HPARAMS tab (TensorBoard ticks the first five by default).
_FINAL_METRICS = ("test_acc", "test_loss", "val_acc", "val_loss", "best_val_acc")


def _hparams_session(cfg: TrainConfig, run_dir: Path, results: dict, status: str) -> None:
    """The run as one row of TensorBoard's HPARAMS tab, named by its run name, in a writer of
    its own (``<run dir>/hparams``): its config keys and its final metrics only."""
    from omegaconf import OmegaConf

    from cnnlab.train.tensorboard import HPARAMS_RUN, TensorBoardWriter, hparam_values

    config = OmegaConf.to_container(cfg, resolve=True)
    metrics = {k: results[k] for k in _FINAL_METRICS if results.get(k) is not None}
    name = results.get("name") or run_dir.name
    # TensorBoard keeps a tag's first metadata: a resumed run replaces the session an
    # interrupted one left, rather than adding a second.
    shutil.rmtree(run_dir / HPARAMS_RUN, ignore_errors=True)
    with TensorBoardWriter(run_dir / HPARAMS_RUN) as tb:
        tb.hparams(hparam_values(config), metrics, name, results["steps"], status)  # type: ignore[arg-type]


def _write_results(run_dir: Path, results: dict) -> None:
    from cnnlab.runs.status import record_status

    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    record_status(run_dir, results["status"])


def _plot_filters(params: dict, path: Path) -> None:
    """filters.png: the first conv layer's filters as training left them (none without a
    conv)."""
    from cnnlab.train.plot import plot_filters
    from cnnlab.train.tensorboard import first_conv

    filters = first_conv(params)
    if filters is not None:
        plot_filters(filters, path)


def _diagnostics(
    engine: Engine,
    data: Dataset,
    test: Evaluation,
    run_dir: Path,
    tb: TensorBoardWriter | None,
    step: int,
) -> None:
    """What the run learned, in pictures of the test split (misclassified images, confusion
    matrix, saliency and feature maps: :mod:`cnnlab.train.diagnostics`), as PNGs in the run
    directory and TensorBoard images at the last step; completed runs only."""
    from cnnlab.train.diagnostics import build_and_write

    title = f"Test confusion matrix ({data.name})"
    build_and_write(engine, data, data.test, test.pred, title, run_dir, tb, step)


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
    from cnnlab.train.metrics import confusion_table, confusion_text
    from cnnlab.train.plot import plot_history

    title = f"Test confusion matrix ({data.name})"
    console.print(confusion_table(test, data.classes, title))
    # train.log gets it as text: the console's table would reach it as rich's markup.
    logging.getLogger("cnnlab.file").info("%s", confusion_text(test, data.classes, title))
    plot_history(_epochs(run_dir / "metrics.jsonl"), run_dir / "history.png")
    _hparams_session(cfg, run_dir, results, "success")
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
