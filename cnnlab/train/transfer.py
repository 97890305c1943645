"""Transfer learning: a new run that starts from another run's weights.

``trainer.init_from=<run dir or checkpoint>`` copies a checkpoint's parameters and buffers
(``param/<name>``, ``buffer/<name>``: the same keys on every backend) into a new run's model,
before the run's engine is made; the optimizer state and the loop position stay those of a new
run. A name is loaded where the model has it with the same shape (cast to the run's dtype).
Everything else in the model keeps the values the run drew from its own seed and ``init``, as
a run without ``init_from`` would start: those whose shape differs (a head for another number
of classes), those the checkpoint lacks, and those that ``trainer.reinit`` names.
``trainer.freeze`` names parameters that no update changes: the numpy optimizers are not
given them (so no weight decay, momentum or Adam state either), nor is ``torch.optim``, and
torch computes no gradient for them.

**Patterns.** ``trainer.freeze`` and ``trainer.reinit`` take a list of patterns. A pattern
names a parameter (``conv1.w``) or a module, which stands for everything under it, compared
at the dots: ``conv1`` names ``conv1.w`` and ``conv1.b`` but not ``conv10.w``, and ``layer1.0``
the first block of ``layer1``. ``*`` matches any run of characters, dots included, ``?`` one
(:func:`fnmatch.fnmatchcase`): ``conv*`` names every top-level conv, ``*norm1`` every
``norm1``. A pattern that names nothing is a one-line usage error listing the names there are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import CnnlabError, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cnnlab.models import Instance
    from cnnlab.ops.tree import Node, Shape
    from cnnlab.schema import TrainerConfig
    from cnnlab.train.checkpoint import Checkpoint

log = logging.getLogger("cnnlab.train")

# How many names a message lists before it groups them by module.
LISTED = 12
KINDS = ("param/", "buffer/")


def matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` names ``name``: the name itself or a module above it (``conv1``
    for ``conv1.w``, never for ``conv10.w``), with ``*`` and ``?`` as wildcards."""
    parts = name.split(".")
    return any(fnmatchcase(".".join(parts[:k]), pattern) for k in range(1, len(parts) + 1))


def selected(patterns: Iterable[str], names: Iterable[str]) -> list[str]:
    """The names, in their order, that any of ``patterns`` names."""
    patterns = list(patterns)
    return [n for n in names if any(matches(p, n) for p in patterns)]


def listing(names: Sequence[str]) -> str:
    """``names`` for a one-line message: all of them when few, else grouped by top-level
    module with counts (``conv1 (1), layer1 (12), ...``), cut after :data:`LISTED` groups."""
    if len(names) <= LISTED:
        return ", ".join(names)
    groups: dict[str, int] = {}
    for name in names:
        top = name.split(".")[0]
        groups[top] = groups.get(top, 0) + 1
    shown = [f"{top} ({count})" for top, count in groups.items()]
    more = f", and {len(shown) - LISTED} more modules" if len(shown) > LISTED else ""
    return f"{len(names)} in all, by module: " + ", ".join(shown[:LISTED]) + more


def check_patterns(
    key: str, patterns: Sequence[str], names: Sequence[str], model: str, what: str
) -> None:
    """One UsageError line for the first pattern of ``key`` that names none of ``names`` (the
    model's ``what``: ``parameters``, or ``parameters and buffers``)."""
    for pattern in patterns:
        if not pattern or not any(matches(pattern, n) for n in names):
            raise UsageError(
                f"{key}: {pattern!r} names none of the {what} of model={model}, which are "
                f"{listing(names)} (give a name, a module as conv1, or a pattern as conv*)"
            )


@dataclass(frozen=True)
class Transfer:
    """What ``trainer.init_from`` takes from a checkpoint, by name (parameters and buffers).

    Attributes:
        path: the checkpoint file.
        loaded: the model's names copied from it, in the model's order.
        skipped: the checkpoint's names the model does not have.
        reinitialised: the model's other names, each with why it keeps the run's own
            initial values (a shape that differs, absent from the checkpoint, trainer.reinit).
    """

    path: Path
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    reinitialised: dict[str, str]

    def record(self) -> dict:
        """results.json's ``init_from``."""
        return {
            "path": str(self.path),
            "loaded": list(self.loaded),
            "skipped": list(self.skipped),
            "reinitialised": list(self.reinitialised),
        }

    def log(self) -> None:
        """One line of counts, then one per name that was not loaded."""
        log.info(
            "init_from %s: loaded %d, skipped %d, re-initialised %d (parameters and buffers)",
            self.path,
            len(self.loaded),
            len(self.skipped),
            len(self.reinitialised),
        )
        for name in self.skipped:
            log.info("init_from: skipped %s (not in this model)", name)
        for name, why in self.reinitialised.items():
            log.info("init_from: re-initialised %s (%s)", name, why)


def plan(
    state: Mapping[str, np.ndarray],
    shapes: Mapping[str, Shape],
    reinit: Sequence[str],
    path: Path,
) -> Transfer:
    """What to take from a checkpoint's ``state`` for a model whose parameters and buffers have
    ``shapes`` (keyed ``param/<name>``, ``buffer/<name>``), ``reinit`` patterns drawn afresh."""
    loaded: list[str] = []
    reinitialised: dict[str, str] = {}
    for key, shape in shapes.items():
        name = key.partition("/")[2]
        saved = state.get(key)
        if any(matches(p, name) for p in reinit):
            reinitialised[name] = "trainer.reinit"
        elif saved is None:
            reinitialised[name] = "not in the checkpoint"
        elif tuple(saved.shape) != tuple(shape):
            here, there = list(shape), list(saved.shape)
            reinitialised[name] = f"shape {here} here, {there} in the checkpoint"
        else:
            loaded.append(name)
    skipped = [
        key.partition("/")[2] for key in state if key.startswith(KINDS) and key not in shapes
    ]
    return Transfer(path, tuple(loaded), tuple(skipped), reinitialised)


def model_shapes(params: Mapping[str, np.ndarray], buffers: Mapping[str, np.ndarray]) -> dict:
    """``param/<name>`` and ``buffer/<name>`` to shape, as :func:`plan` takes them."""
    shapes = {f"param/{k}": v.shape for k, v in params.items()}
    return shapes | {f"buffer/{k}": v.shape for k, v in buffers.items()}


def check(trainer: TrainerConfig, net: Node, in_shape: Shape, model: str) -> Checkpoint | None:
    """``trainer.init_from``, ``trainer.freeze`` and ``trainer.reinit`` against the run's
    model, before anything runs; returns the checkpoint, read once (None without init_from).

    UsageError (exit 2): a pattern that names nothing, a freeze of every parameter, reinit
    without init_from, no checkpoint at init_from, or one that shares no parameter with the
    model. RunError (exit 1): a checkpoint that cannot be read.
    """
    from cnnlab.ops.tree import buffer_specs, param_specs
    from cnnlab.train.checkpoint import read

    shapes = {f"param/{s.name}": s.shape for s in param_specs(net, in_shape)}
    shapes |= {f"buffer/{b.name}": b.shape for b in buffer_specs(net, in_shape)}
    params = [k.removeprefix("param/") for k in shapes if k.startswith("param/")]
    buffers = [k.removeprefix("buffer/") for k in shapes if k.startswith("buffer/")]
    freeze, reinit = list(trainer.freeze), list(trainer.reinit)
    check_patterns("trainer.freeze", freeze, params, model, "parameters")
    check_patterns("trainer.reinit", reinit, params + buffers, model, "parameters and buffers")
    if freeze and len(selected(freeze, params)) == len(params):
        given = ",".join(freeze)
        raise UsageError(f"trainer.freeze=[{given}] freezes every parameter: nothing would train")
    if not trainer.init_from:
        if reinit:
            raise UsageError(
                "trainer.reinit re-initialises weights that trainer.init_from loads; give both"
            )
        return None
    source = read(trainer.init_from, "trainer.init_from")
    if not set(plan(source.state, shapes, reinit, source.path).loaded) & set(params):
        raise UsageError(
            f"trainer.init_from: {source.path} holds no parameter of model={model} with the "
            "same name and shape"
        )
    return source


def start(
    trainer: DictConfig, model: Instance, source: Checkpoint | None, resuming: bool
) -> tuple[frozenset[str], dict | None]:
    """The run's frozen parameters and, with ``trainer.init_from``, its weights taken from the
    checkpoint (``source``, or read now), written into ``model``'s arrays before an engine
    copies them; returns ``(frozen, record)``, the record for results.json (None without
    init_from). trainer: the run's ``trainer`` node (composed, or saved with the run).

    A resumed run takes every weight from its own checkpoint: nothing is copied, and the
    record is made again from the source where it can still be read (else only its path)."""
    from cnnlab.train.checkpoint import read

    # .get: configs saved before these keys existed lack them.
    frozen = frozenset(selected(trainer.get("freeze") or [], model.params))
    init_from, reinit = trainer.get("init_from"), list(trainer.get("reinit") or [])
    if not init_from:
        return frozen, None
    try:
        source = source or read(init_from, "trainer.init_from")
    except CnnlabError as exc:
        if not resuming:
            raise
        log.warning("init_from: %s; results.json records only its path", exc)
        return frozen, {"path": str(init_from)}
    transfer = plan(source.state, model_shapes(model.params, model.buffers), reinit, source.path)
    if not resuming:
        for name in transfer.loaded:
            if name in model.params:
                model.params[name][...] = source.state[f"param/{name}"]  # in the run's dtype
            else:
                model.buffers[name][...] = source.state[f"buffer/{name}"]
        transfer.log()
    return frozen, transfer.record()


def log_frozen(frozen: frozenset[str], params: Mapping[str, np.ndarray]) -> None:
    """One line naming the frozen parameters and how many values they hold."""
    if frozen:
        names = [n for n in params if n in frozen]
        values = sum(params[n].size for n in names)
        total = sum(p.size for p in params.values())
        log.info("frozen: %s (%s of %s values)", listing(names), f"{values:,}", f"{total:,}")
