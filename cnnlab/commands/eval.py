"""``cnnlab eval checkpoint=<path>``: accuracy, per-class accuracy and confusion matrix;
with ``diagnostics=true``, pictures of the split in eval's run directory and its TensorBoard
events (:mod:`cnnlab.train.diagnostics`).

The checkpoint carries the configuration of its run, so the model, data, preprocessing and
precision are rebuilt exactly; ``backend=<name>`` evaluates the same weights on another backend.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.backends import Backend, BackendOptions
    from cnnlab.data import Dataset
    from cnnlab.models import Instance
    from cnnlab.schema import EvalConfig, SavedModelConfig, TrainConfig
    from cnnlab.train.checkpoint import Checkpoint
    from cnnlab.train.engine import Engine
    from cnnlab.train.metrics import Evaluation

log = logging.getLogger("cnnlab.eval")


@dataclass(frozen=True)
class Plan:
    """The checkpoint (read once, and checked against its model), the run's config (with
    ``data.root`` if given), the backend that evaluates its weights and how it runs."""

    checkpoint: Checkpoint
    run: TrainConfig
    backend: Backend
    options: BackendOptions


def check_config(cfg: EvalConfig | SavedModelConfig) -> Plan:
    """The checkpoint exists, reads and fits its model, and the backend can run here in the
    run's precision."""
    from omegaconf import OmegaConf

    from cnnlab.backends import get_backend
    from cnnlab.errors import UsageError
    from cnnlab.precision import Precision
    from cnnlab.train.checkpoint import model_of, read

    checkpoint = read(cfg.checkpoint, "checkpoint")
    run = checkpoint.config
    if cfg.data.root is not None:
        OmegaConf.update(run, "data.root", cfg.data.root, force_add=True)
    model_of(checkpoint, run)
    name = cfg.backend.name if cfg.backend is not None else run.backend.name
    backend = get_backend(name).require()
    options = _options(cfg, run)
    why = options.unsupported(backend)
    if why is not None:
        precision = Precision(options.precision)
        if precision.unsupported(backend.framework, backend.device) is not None:
            why += f"; the run trained in {precision}, and eval keeps its precision"
        raise UsageError(f"backend={backend.name}: {why}")
    return Plan(checkpoint, run, backend, options)


def _options(cfg: EvalConfig | SavedModelConfig, run: TrainConfig) -> BackendOptions:
    """eval's own threads, Winograd and torch switches, in the precision the run trained in
    (its weights' dtype); a different ``trainer.precision`` asked of eval is refused."""
    from dataclasses import replace

    from cnnlab.backends import BackendOptions
    from cnnlab.errors import UsageError
    from cnnlab.train.resume import given_overrides

    own = str(run.trainer.precision)
    asked = {o.lstrip("+~").partition("=")[0] for o in given_overrides(cfg)}
    if "trainer.precision" in asked and str(cfg.trainer.precision) != own:
        raise UsageError(
            f"trainer.precision={cfg.trainer.precision}: eval runs a checkpoint in the "
            f"precision its run trained in, {own}"
        )
    return replace(BackendOptions.of(cfg.trainer, cfg.user), precision=own)


@dataclass(frozen=True)
class Restored:
    """A saved model ready to run: the run's data (split and normalised as it trained, in
    the plan's precision), its layer tree and the engine holding the checkpoint's weights."""

    data: Dataset
    model: Instance
    engine: Engine


def restore(plan: Plan) -> Restored:
    """Rebuild the run's data and model on the plan's backend and load the weights: what eval,
    ``cnnlab predict`` and ``cnnlab export`` run."""
    from cnnlab.data import load as load_data
    from cnnlab.precision import Precision

    run = plan.run
    data = load_data(run.data, int(run.trainer.seed), Precision(plan.options.precision).dtype)
    model, engine = rebuild(plan, data.inputs.shape)
    return Restored(data, model, engine)


def rebuild(plan: Plan, in_shape: tuple[int, int, int]) -> tuple[Instance, Engine]:
    """The run's model for inputs of ``in_shape`` (C, H, W), on the plan's backend in the
    run's precision, holding the checkpoint's weights; no data is read."""
    import numpy as np

    from cnnlab.models import INIT_STREAM, instantiate
    from cnnlab.precision import Precision
    from cnnlab.train.engine import make_engine

    run, options = plan.run, plan.options
    dtype = Precision(options.precision).dtype
    rng = np.random.default_rng([run.trainer.seed, INIT_STREAM])  # replaced by the checkpoint's
    model = instantiate(run.model, run.norm, run.init, in_shape, rng, dtype, act=run.get("act"))
    engine = make_engine(plan.backend, model, run.optim, options=options)
    engine.load_weights(plan.checkpoint.state)
    return model, engine


def task(cfg: EvalConfig, plan: Plan | None = None) -> int:
    """Rebuild the run's model and data, load the weights, evaluate one split."""
    from rich.console import Console

    from cnnlab.config import run_dir
    from cnnlab.train.metrics import confusion_table, evaluate

    plan = plan or check_config(cfg)
    checkpoint, backend, run, options = plan.checkpoint, plan.backend, plan.run, plan.options
    path, meta = checkpoint.path, checkpoint.meta
    restored = restore(plan)
    data, engine = restored.data, restored.engine
    split = getattr(data, cfg.split)
    ev = evaluate(engine, split.x, split.y, int(cfg.trainer.eval_batch_size), len(data.classes))
    Console().print(
        confusion_table(ev, data.classes, f"{cfg.split} confusion matrix ({data.name})")
    )
    per_class = {
        c: None if math.isnan(a) else float(a)
        for c, a in zip(data.classes, ev.per_class, strict=True)
    }
    result = {
        "checkpoint": str(path),
        "step": meta["loop"]["step"],
        "model": run.model.name,
        "backend": backend.name,
        "data": data.name,
        "split": cfg.split,
        "precision": options.precision,
        "acc": ev.acc,
        "loss": ev.loss,
        "per_class_acc": per_class,
        "confusion": ev.confusion.tolist(),
        "classes": data.classes,
    }
    out = run_dir() / "eval.json"
    out.write_text(json.dumps(result, indent=1))
    log.info(
        "%s accuracy %.2f%% (loss %.4f) of %s at step %d on %s; written to %s",
        cfg.split,
        100 * ev.acc,
        ev.loss,
        run.model.name,
        meta["loop"]["step"],
        backend.name,
        out,
    )
    if cfg.diagnostics:
        _diagnostics(restored, ev, cfg.split, meta["loop"]["step"])
    return 0


def _diagnostics(restored: Restored, ev: Evaluation, split: str, step: int) -> None:
    """The split's pictures (:mod:`cnnlab.train.diagnostics`) as PNGs in eval's run directory
    and TensorBoard images there, at the checkpoint's step."""
    from cnnlab.config import run_dir
    from cnnlab.train.diagnostics import build_and_write
    from cnnlab.train.tensorboard import TensorBoardWriter

    data, out = restored.data, run_dir()
    title = f"{split} confusion matrix ({data.name})"
    with TensorBoardWriter(out) as tb:
        build_and_write(restored.engine, data, getattr(data, split), ev.pred, title, out, tb, step)
