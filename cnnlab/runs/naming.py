"""A run's name: what it is, in one short string, such as ``resnet18-torch-optim=adam-lr=0.01``.

Run directories are named by the time they started (``outputs/<date>/<time>``), which says
nothing about what ran there. The name does: ``cnnlab train`` computes it when the run starts
(:func:`run_name`), stores it in run.json and results.json, and ``cnnlab runs`` shows it. A
resumed run keeps the name it started with (:func:`stored_name`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from cnnlab.runs.record import RESULTS, RUN, read_config, read_json, read_overrides

# Config keys that say where a run writes or reads, how fast it runs or how often it reports,
# and not what it trains: a run given any of them trains to the same weights (which is also
# why a resumed run may change most of them, see cnnlab.train.resume). Names leave them out
# and `cnnlab runs compare` does not list them (Hydra's own keys, hydra.*, neither).
BOOKKEEPING = frozenset(
    {
        "trainer.resume",  # which run to continue, not a different run
        "trainer.overwrite",  # whether to empty the directory first
        "trainer.threads",
        "trainer.log_every",
        "trainer.checkpoint_every_steps",
        "trainer.checkpoint_every_epochs",
        "trainer.checkpoints",
        "trainer.save_top_k",  # how many of the best checkpoints to keep
        "data.root",  # where the same data set lies; stored absolute, so it differs by machine
        "data.download",
    }
)


def is_hydras(key: str) -> bool:
    """Whether a dotted config key or an override's key is one of Hydra's own settings
    (``hydra.run.dir``, ``hydra/launcher``), not the run's."""
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def describes_experiment(key: str) -> bool:
    """Whether a dotted config key (or an override's key) is part of what a run trains: not
    Hydra's (:func:`is_hydras`) and not :data:`BOOKKEEPING`."""
    return not (is_hydras(key) or key in BOOKKEEPING)


def run_name(model: str, backend: str, overrides: Iterable[str]) -> str:
    """The name of a run of ``model`` on ``backend`` started with these command-line overrides.

    The rule: ``<model>-<backend>``, then ``-<key>=<value>`` for each override in the order the
    user gave them, where

    - overrides that do not describe the experiment are left out (:func:`describes_experiment`:
      Hydra's own keys and :data:`BOOKKEEPING` such as ``trainer.resume``), and so are
      ``model=`` and ``backend=``, which the name already starts with;
    - a dotted key is shortened to its last part (``optim.lr=0.01`` -> ``lr=0.01``) unless two
      of the overrides kept share that last part, which then keep their full keys;
    - ``+``/``++``/``~`` prefixes, quotes and blanks in values are dropped; an override
      without a value (``~key``) is left out.

    Example: ``run_name("resnet18", "torch", ["optim=adam", "optim.lr=0.01",
    "trainer.epochs=2", "trainer.threads=2"])`` is ``resnet18-torch-optim=adam-lr=0.01-epochs=2``.
    Two runs with the same overrides have the same name; their directories tell them apart.
    """
    kept: list[tuple[str, str]] = []
    for override in overrides:
        key, eq, value = override.lstrip("+~").partition("=")
        if not eq or key in ("model", "backend") or not describes_experiment(key):
            continue
        kept.append((key, re.sub(r"\s+", "", value).strip("'\"")))
    leaves = Counter(key.rpartition(".")[2] for key, _ in kept)
    parts = [model, backend]
    for key, value in kept:
        leaf = key.rpartition(".")[2]
        parts.append(f"{leaf if leaves[leaf] == 1 else key}={value}")
    return "-".join(parts)


def stored_name(run_dir: Path) -> str | None:
    """The name a run directory's run already has: the one run.json or results.json records,
    else the one :func:`run_name` gives from its ``.hydra`` record (runs from before names);
    None where the directory holds no readable run."""
    for file in (RUN, RESULTS):
        name = read_json(run_dir / file).get("name")
        if isinstance(name, str) and name:
            return name
    config = read_config(run_dir)
    model, backend = config.get("model"), config.get("backend")
    if not isinstance(model, dict) or not isinstance(backend, dict):
        return None
    return run_name(str(model.get("name")), str(backend.get("name")), read_overrides(run_dir))
