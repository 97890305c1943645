"""Continuing a run: where it writes, and what may change when it continues.

``trainer.resume=<run dir>`` (or a checkpoint file inside a run directory's ``checkpoints/``)
continues that run in that directory, wherever it has been moved or copied to: the run
directory recorded inside the checkpoint is never used to decide where to write. A loose
checkpoint file, outside any run directory, continues in a new run directory that records
where it came from.

The run keeps the configuration it was started with. Overrides given with ``trainer.resume``
may change only what does not change the run's results: the data's folder, the thread count,
how often it logs and checkpoints and how many best checkpoints it keeps, and how long it
trains (``trainer.epochs``, ``trainer.max_steps``, early stopping's ``trainer.patience`` and
``trainer.min_delta``). Anything else is refused, never ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import UsageError
from cnnlab.rundir import holds_run

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cnnlab.schema import TrainConfig
    from cnnlab.train.checkpoint import Checkpoint

# The keys an override may set on a resumed run.
CHANGEABLE = (
    "data.root",
    "trainer.threads",
    "trainer.log_every",
    "trainer.checkpoint_every_steps",
    "trainer.checkpoint_every_epochs",
    "trainer.save_top_k",
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.patience",
    "trainer.min_delta",
)
# Keys that say how to resume rather than what the run is.
RESUME_KEYS = ("trainer.resume", "trainer.overwrite")


def run_dir_of(checkpoint: Checkpoint) -> Path | None:
    """The run directory that holds ``checkpoint`` (``<run dir>/checkpoints/<name>.npz``), or
    None for a loose checkpoint file."""
    folder = checkpoint.path.parent
    if folder.name == "checkpoints" and holds_run(folder.parent):
        return folder.parent
    return None


def given_overrides(cfg: TrainConfig) -> list[str]:
    """The overrides the command line gave (Hydra records them when it composes)."""
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or []]


def resumed_config(cfg: TrainConfig, checkpoint: Checkpoint) -> DictConfig:
    """The run's own config with the changeable overrides of ``cfg`` applied; any other
    override is a one-line UsageError naming it."""
    from omegaconf import OmegaConf

    saved = checkpoint.config
    into_own_dir = run_dir_of(checkpoint) is not None
    for override in given_overrides(cfg):
        key = override.lstrip("+~").partition("=")[0]
        if key in RESUME_KEYS:
            continue
        if key.startswith(("hydra.", "hydra/")):
            if key == "hydra.run.dir" and into_own_dir:
                raise UsageError(
                    f"{override}: a resumed run continues in its own directory "
                    f"({checkpoint.path.parent.parent})"
                )
            continue
        if key not in CHANGEABLE:
            raise UsageError(
                f"{override}: a resumed run keeps the config it started with; with "
                f"trainer.resume only {', '.join(CHANGEABLE)} may change"
            )
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    return saved
