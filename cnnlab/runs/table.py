"""Many runs at once: find the training runs under some folders, describe each in one row, then
filter, sort and show the rows (a rich table, JSON or CSV).

A row is read from the run's own files only (:mod:`cnnlab.runs.record`), so runs made on
other machines, copied or moved, are listed as well as the ones made here.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnlab.errors import UsageError
from cnnlab.rundir import holds_run
from cnnlab.runs.naming import is_hydras, stored_name
from cnnlab.runs.record import (
    CONFIG,
    RESULTS,
    RUN,
    epoch_records,
    job_name,
    read_config,
    read_json,
    read_overrides,
)
from cnnlab.runs.status import STATUSES, status_of

# What `cnnlab runs` searches when given no folder: where single runs and sweeps write.
DEFAULT_FOLDERS = (Path("outputs"), Path("multirun"))
# The files only a training run writes, for run directories whose Hydra record says no name.
_TRAIN_FILES = (RUN, RESULTS, "metrics.jsonl", "train.log")
# The columns of JSON and CSV output, in order: every field of a Run but its config.
COLUMNS = (
    "name",
    "dir",
    "started",
    "model",
    "backend",
    "overrides",
    "epochs",
    "best_val_acc",
    "test_acc",
    "wall_s",
    "status",
)


@dataclass(frozen=True)
class Run:
    """One training run, as a row of ``cnnlab runs``.

    dir: the run directory; name: :func:`cnnlab.runs.naming.stored_name`; started: when its
    first session started (None: unknown); overrides: the user's, less Hydra's own; epochs:
    epochs done; best_val_acc: the best validation accuracy over those epochs; test_acc and
    wall_s: from results.json (None before the run ends); status: see
    :mod:`cnnlab.runs.status`; config: the composed config, flattened to dotted keys.
    """

    dir: Path
    name: str
    started: datetime | None
    model: str | None
    backend: str | None
    overrides: tuple[str, ...]
    epochs: int
    best_val_acc: float | None
    test_acc: float | None
    wall_s: float | None
    status: str
    config: dict[str, Any] = field(repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        """The row as plain values, in :data:`COLUMNS` order (JSON's and CSV's)."""
        values = {c: getattr(self, c) for c in COLUMNS}
        started = None if self.started is None else self.started.isoformat()
        return values | {
            "dir": str(self.dir),
            "started": started,
            "overrides": list(self.overrides),
        }


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted key: value}``; lists are values, not nodes, and an empty
    mapping is a value (``{}``), so that no key disappears."""
    if not isinstance(node, dict) or (prefix and not node):
        return {prefix.rstrip("."): node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, f"{prefix}{key}.")
    return flat


def find_runs(folders: Iterable[Path]) -> list[Path]:
    """Every training run directory at or under ``folders``, each once, in path order.

    A folder that holds a run is not searched further (its checkpoints/ holds no run).
    Directories of other commands (eval, summary, ...) are left out.
    """
    found: set[Path] = set()
    for folder in folders:
        found.update(d for d in _run_dirs(folder) if is_training_run(d))
    return sorted(found)


def _run_dirs(folder: Path) -> Iterator[Path]:
    for top, dirs, _ in os.walk(folder):
        here = Path(top)
        if holds_run(here):
            dirs.clear()
            yield here
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))


def is_training_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run of ``cnnlab train``: Hydra's record of it says so, or
    (with no such record) it holds a file only training writes."""
    if not holds_run(run_dir):
        return False
    name = job_name(run_dir)
    if name is not None:
        return name == "train"
    return any((run_dir / f).exists() for f in _TRAIN_FILES)


def _started(run_dir: Path, record: dict[str, Any]) -> datetime | None:
    """When the run first started: run.json's record of it, else (runs from before run.json)
    when Hydra wrote its config, which a resume leaves as it was."""
    try:
        return datetime.fromisoformat(str(record["started"]))
    except (KeyError, ValueError):
        pass
    try:
        return datetime.fromtimestamp((run_dir / CONFIG).stat().st_mtime).astimezone()
    except OSError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def describe(run_dir: Path) -> Run:
    """The row of the training run in ``run_dir`` (see :class:`Run`)."""
    record, results = read_json(run_dir / RUN), read_json(run_dir / RESULTS)
    config = read_config(run_dir)
    flat = flatten(config)
    epochs = epoch_records(run_dir)
    accs = [a for a in (_number(e.get("val_acc")) for e in epochs) if a is not None]
    overrides = [o for o in read_overrides(run_dir) if _users_own(o)]
    return Run(
        dir=run_dir,
        name=stored_name(run_dir) or run_dir.name,
        started=_started(run_dir, record),
        model=_text(flat.get("model.name")),
        backend=_text(flat.get("backend.name")),
        overrides=tuple(overrides),
        epochs=len(epochs),
        best_val_acc=max(accs, default=None),
        test_acc=_number(results.get("test_acc")),
        wall_s=_number(results.get("wall_s")),
        status=status_of(run_dir, record, results),
        config=flat,
    )


def _users_own(override: str) -> bool:
    """Whether an override is the user's own, not one of Hydra's: Hydra keeps its own apart,
    but a run directory written by hand may mix them in."""
    return not is_hydras(override.lstrip("+~").partition("=")[0])


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def collect(folders: Iterable[Path]) -> list[Run]:
    """The rows of every training run under ``folders``; a folder that does not exist or is not
    a folder is a UsageError naming it."""
    folders = list(folders)
    for folder in folders:
        if not folder.is_dir():
            what = "not a folder" if folder.exists() else "no such folder"
            raise UsageError(f"{folder}: {what}")
    return [describe(d) for d in find_runs(folders)]


# -- filters and order ------------------------------------------------------------------------


def _matches(actual: Any, wanted: str) -> bool:
    """Whether a config value equals the text of a ``--where`` value: as text, or as numbers
    (``1e-2`` matches 0.01), or as YAML's booleans and null (``true``, ``null``)."""
    if isinstance(actual, bool) or actual is None:
        words = {True: "true", False: "false", None: "null"}
        return wanted.strip().lower() == words[actual]
    if str(actual) == wanted:
        return True
    try:
        return isinstance(actual, int | float) and float(actual) == float(wanted)
    except ValueError:
        return False


def where_clause(text: str) -> tuple[str, str]:
    """``key=value`` as ``(key, value)``; anything else is a UsageError."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise UsageError(f"--where {text}: expected key=value, such as optim.lr=0.01")
    return key.strip(), value.strip()


def select(
    runs: list[Run],
    statuses: Iterable[str] = (),
    models: Iterable[str] = (),
    backends: Iterable[str] = (),
    where: Iterable[tuple[str, str]] = (),
) -> list[Run]:
    """The runs that pass every filter given: a status, model or backend among those listed,
    and each ``(key, value)`` equal in the run's config (:func:`_matches`). A status that no run
    can have, or a config key that no run has, is a UsageError (a typo would list nothing)."""
    statuses, models, backends, where = set(statuses), set(models), set(backends), list(where)
    unknown = statuses - set(STATUSES)
    if unknown:
        raise UsageError(
            f"--status {', '.join(sorted(unknown))}: no such status; choose from "
            f"{', '.join(STATUSES)}"
        )
    for key, _ in where:
        if runs and not any(key in r.config for r in runs):
            raise UsageError(
                f"--where {key}: no run has this config key (keys are dotted, such "
                "as optim.lr or trainer.epochs)"
            )
    return [
        r
        for r in runs
        if (not statuses or r.status in statuses)
        and (not models or r.model in models)
        and (not backends or r.backend in backends)
        and all(key in r.config and _matches(r.config[key], value) for key, value in where)
    ]


# Each sort key: the value it sorts by, and whether larger comes first (accuracies: the best
# first). Runs without the value come last either way.
SORTS: dict[str, tuple[Callable[[Run], Any], bool]] = {
    "start": (lambda r: r.started.timestamp() if r.started else None, False),
    "name": (lambda r: r.name, False),
    "val": (lambda r: r.best_val_acc, True),
    "test": (lambda r: r.test_acc, True),
    "wall": (lambda r: r.wall_s, False),
    "epochs": (lambda r: r.epochs, True),
    "status": (lambda r: STATUSES.index(r.status) if r.status in STATUSES else None, False),
    "dir": (lambda r: str(r.dir), False),
}


def ordered(runs: list[Run], key: str = "start", reverse: bool = False) -> list[Run]:
    """The runs sorted by ``key`` (one of :data:`SORTS`), ties by directory; ``reverse`` flips
    the order of those with a value."""
    if key not in SORTS:
        raise UsageError(f"--sort {key}: no such key; choose from {', '.join(SORTS)}")
    value, descending = SORTS[key]
    by_dir = sorted(runs, key=lambda r: str(r.dir))
    known = [r for r in by_dir if value(r) is not None]
    missing = [r for r in by_dir if value(r) is None]
    return sorted(known, key=value, reverse=descending != reverse) + missing


# -- output -----------------------------------------------------------------------------------


def _acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, s = divmod(seconds, 60)
    return f"{s:.1f} s" if minutes < 1 else f"{int(minutes)} min {int(s):02d} s"


STATUS_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "interrupted": "yellow"}


# The table's columns, in order.
COLUMN_TITLES = (
    "name",
    "started",
    "model",
    "backend",
    "overrides",
    "epochs",
    "best val",
    "test",
    "wall",
    "status",
)
# Columns a narrow console goes without, in this order: the name says the same (it starts with
# the model and backend and goes on with the overrides), and --json or --csv has them all.
NARROW_DROPS = ("overrides", "backend", "model")


def table(runs: list[Run], title: str, width: int | None = None) -> Any:
    """A rich table of the runs, one row each, with the columns ``cnnlab runs`` shows; where
    ``width`` (the console's) cannot hold every row on one line, without as many of
    :data:`NARROW_DROPS` as that takes (the caption names them). What is left folds."""
    from rich.console import Console
    from rich.measure import Measurement

    dropped: list[str] = []
    out = _table(runs, title, dropped)
    if width is None:
        return out
    console = Console(width=10_000)  # measures the table's natural width, not the console's
    for column in NARROW_DROPS:
        if Measurement.get(console, console.options, out).maximum <= width:
            break
        dropped.append(column)
        out = _table(runs, title, dropped)
    if dropped:
        left_out = ", ".join(dropped)
        out.caption = f"narrow console: {left_out} left out (the name says them; --json has all)"
    return out


def _table(runs: list[Run], title: str, dropped: list[str]) -> Any:
    from rich.table import Table
    from rich.text import Text

    out = Table(title=Text(title))
    # Every column folds (a long name goes on over lines) rather than ending in "…".
    right = ("epochs", "best val", "test", "wall")
    kept = [c for c in COLUMN_TITLES if c not in dropped]
    for c in kept:
        out.add_column(c, overflow="fold", justify="right" if c in right else "left")
    for r in runs:
        started = "–" if r.started is None else r.started.strftime("%Y-%m-%d %H:%M:%S")
        cells = {
            # Text, not markup: an override such as backends=[naive] is no style tag.
            "name": Text(r.name),
            "started": started,
            "model": r.model or "–",
            "backend": r.backend or "–",
            "overrides": Text(" ".join(r.overrides)),
            "epochs": str(r.epochs),
            "best val": _acc(r.best_val_acc),
            "test": _acc(r.test_acc),
            "wall": _wall(r.wall_s),
            "status": Text(r.status, style=STATUS_STYLE.get(r.status, "")),
        }
        out.add_row(*(cells[c] for c in kept))
    return out


def as_json(runs: list[Run]) -> str:
    """The rows as a JSON list, every column at full precision."""
    return json.dumps([r.row() for r in runs], indent=1)


def as_csv(runs: list[Run]) -> str:
    """The rows as CSV with a header; overrides space-separated, empty where there is no
    value."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in runs:
        row = r.row() | {"overrides": " ".join(r.overrides)}
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
