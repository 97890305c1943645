"""A few runs side by side: the config keys that differ between them, their metrics, and one
plot of their validation curves.

The keys compared are each run's composed config (``.hydra/config.yaml``) flattened to dotted
keys (``optim.lr``, ``model.widths``: a list is one value), less the keys that do not change
what a run trains: Hydra's own (``hydra.*``) and :data:`cnnlab.runs.naming.BOOKKEEPING`
(``trainer.resume``, ``trainer.overwrite``, ``trainer.threads``, ``trainer.log_every``,
``trainer.checkpoint_every_steps``, ``trainer.checkpoint_every_epochs``,
``trainer.checkpoints``, ``trainer.save_top_k``, ``data.root``, ``data.download``). A key one run
has and another lacks (a config from an older cnnlab, another data set's options) differs too,
shown as absent there. Interpolations are compared as written (``${data.num_classes}``): the
key they point at is compared in its own row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import UsageError
from cnnlab.rundir import holds_run
from cnnlab.runs.naming import describes_experiment
from cnnlab.runs.record import epoch_records, job_name
from cnnlab.runs.table import Run, describe, is_training_run


class _Absent:
    """The value of a key a run's config does not have."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def load(run_dirs: list[Path]) -> list[Run]:
    """The rows of the runs to compare, in the order given: two or more training run
    directories, else a UsageError naming the first that is not one."""
    if len(run_dirs) < 2:
        raise UsageError("give two run directories or more")
    for d in run_dirs:
        if not d.is_dir():
            raise UsageError(f"{d}: {'not a folder' if d.exists() else 'no such folder'}")
        if not holds_run(d):
            raise UsageError(f"{d}: not a run directory (it has no .hydra/config.yaml)")
        if not is_training_run(d):
            raise UsageError(f"{d}: a run of cnnlab {job_name(d)}, not of cnnlab train")
    return [describe(d) for d in run_dirs]


def differing(runs: list[Run]) -> dict[str, list[Any]]:
    """``{key: [its value in each run]}`` for exactly the keys whose values are not all equal,
    sorted by key (see the module's docstring for the keys left out)."""
    keys = sorted({k for r in runs for k in r.config if describes_experiment(k)})
    out = {}
    for key in keys:
        values = [r.config.get(key, ABSENT) for r in runs]
        if any(_differ(v, values[0]) for v in values[1:]):
            out[key] = values
    return out


def _differ(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is not b
    # YAML reads 1 and 1.0 as int and float, and True == 1 in Python: compare types as well.
    return type(a) is not type(b) or a != b


def metrics(run: Run) -> dict[str, Any]:
    """The run's metrics for the side-by-side table: its status, epochs done, best and last
    validation accuracy, last validation loss, test accuracy and wall time."""
    epochs = epoch_records(run.dir)
    last = epochs[-1] if epochs else {}
    return {
        "status": run.status,
        "epochs": run.epochs,
        "best_val_acc": run.best_val_acc,
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        "test_acc": run.test_acc,
        "wall_s": run.wall_s,
    }


def labels(runs: list[Run]) -> list[str]:
    """One label per run: its name, with its directory after it where names repeat."""
    names = [r.name for r in runs]
    return [
        n if names.count(n) == 1 else f"{n} ({r.dir})" for n, r in zip(names, runs, strict=True)
    ]


def plot(runs: list[Run], path: Path) -> bool:
    """Write one PNG of the runs' validation accuracy and loss against epoch (two panels, a
    line per run, from metrics.jsonl's epoch records, one legend below both). Returns False,
    writing nothing, when no run has a validation value to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = [epoch_records(r.dir) for r in runs]
    fig = Figure(figsize=(10, 4 + 0.25 * len(runs)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    lines = {}
    for ax, metric, title in zip(
        axes, ("val_acc", "val_loss"), ("Validation accuracy", "Validation loss"), strict=True
    ):
        for color, label, epochs in zip(range(len(runs)), labels(runs), curves, strict=True):
            points = [(e["epoch"], e[metric]) for e in epochs if e.get(metric) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                (lines[label],) = ax.plot(xs, ys, marker="o", markersize=3, color=f"C{color}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if not lines:
        return False
    fig.legend(list(lines.values()), list(lines), loc="outside lower center", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _metric_text(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key.endswith("acc"):
        return f"{value:.2%}"
    if key == "wall_s":
        return f"{value:.1f} s"
    if key == "val_loss":
        return f"{value:.4f}"
    return str(value)


METRIC_NAMES = {
    "status": "status",
    "epochs": "epochs",
    "best_val_acc": "best val acc",
    "val_acc": "last val acc",
    "val_loss": "last val loss",
    "test_acc": "test acc",
    "wall_s": "wall",
}


def tables(runs: list[Run], keys: dict[str, list[Any]]) -> list[Any]:
    """Two rich tables, a column per run: the keys that differ, then the metrics."""
    from rich.table import Table
    from rich.text import Text

    def new(title: str, first: str) -> Table:
        out = Table(title=Text(title))
        out.add_column(first, no_wrap=True)
        for label, r in zip(labels(runs), runs, strict=True):
            out.add_column(Text(f"{label}\n{_relative(r.dir)}"), overflow="fold")
        return out

    config = new(f"Config keys that differ ({len(keys)})", "key")
    for key, values in keys.items():
        config.add_row(key, *(Text(_shown(v)) for v in values))
    results = new("Metrics", "metric")
    rows = [metrics(r) for r in runs]
    for key, title in METRIC_NAMES.items():
        results.add_row(title, *(_metric_text(key, row[key]) for row in rows))
    return [config, results]


def _relative(path: Path) -> str:
    """``path`` relative to the current directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def as_dict(runs: list[Run], keys: dict[str, list[Any]], plot_path: Path | None) -> dict:
    """The comparison as plain values (``--json``): each run's name, dir and metrics, the keys
    that differ with a value per run (an absent key as the string ``(absent)``) and the plot's
    path (None where none was written)."""
    return {
        "runs": [{"name": r.name, "dir": str(r.dir), **metrics(r)} for r in runs],
        "differ": {k: ["(absent)" if v is ABSENT else v for v in vs] for k, vs in keys.items()},
        "plot": None if plot_path is None else str(plot_path),
    }
