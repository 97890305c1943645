"""The end of a sweep: one table of its jobs on the console and the same rows in sweep.csv.

A sweep's jobs may run in this process (Hydra's basic launcher), in worker processes
(``hydra/launcher=joblib``) or on other machines (``hydra/launcher=slurm``), so what a job
returns in memory does not reach the command that started the sweep. Each job therefore leaves
a record, ``job.json``, in its own directory (:func:`write_record`); when the sweep is over,
:func:`summarize` reads the records back, with the ``results.json`` that ``cnnlab train``
writes next to them, and returns the worst exit code, which the sweep exits with.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

RECORD = "job.json"
CSV = "sweep.csv"


@dataclass(frozen=True)
class JobRow:
    """One job of a sweep, as the table and sweep.csv show it."""

    job: int  # hydra.job.num
    overrides: tuple[str, ...]  # the job's overrides (space-separated in sweep.csv)
    status: str  # completed, failed, diverged, interrupted
    exit_code: int
    val_acc: float | None  # from results.json, where the command writes one
    test_acc: float | None
    wall_s: float | None  # the job's wall time, as its record measured it
    error: str | None  # the one-line error of a failed job
    dir: str  # the job's directory, relative to the sweep directory


def write_record(
    job_dir: Path,
    num: int,
    overrides: list[str],
    exit_code: int,
    error: str | None,
    wall_s: float,
) -> None:
    """Leave the job's record in its directory; replaced whole, so never read half-written."""
    record = {
        "job": num,
        "overrides": list(overrides),
        "exit_code": exit_code,
        "error": error,
        "wall_s": wall_s,
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    partial = job_dir / f".{RECORD}.partial"
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, job_dir / RECORD)


def clear_records(sweep_dir: Path) -> None:
    """Remove the job records of an earlier sweep into the same directory
    (``hydra.sweep.dir=x`` twice): the summary is of this sweep's jobs only. Their other
    outputs stay."""
    if sweep_dir.is_dir():
        for path in sweep_dir.rglob(RECORD):
            path.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; empty when the file is missing or was cut short."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _status(code: int, results: dict[str, Any]) -> str:
    """The job's status: train's own word for it where it wrote one, else from the exit code."""
    status = str(results.get("status", "completed"))
    if code != 0 and status == "completed":
        return "interrupted" if code == 130 else "failed"
    return status


def collect(sweep_dir: Path) -> list[JobRow]:
    """The rows of every job that left a record under ``sweep_dir``, by job number."""
    rows = []
    for path in sweep_dir.rglob(RECORD):
        record = _read_json(path)
        if "exit_code" not in record:
            continue
        results = _read_json(path.parent / "results.json")
        code = int(record["exit_code"])
        rows.append(
            JobRow(
                job=int(record.get("job", -1)),
                overrides=tuple(record.get("overrides", [])),
                status=_status(code, results),
                exit_code=code,
                val_acc=results.get("val_acc"),
                test_acc=results.get("test_acc"),
                wall_s=record.get("wall_s"),
                error=record.get("error"),
                dir=path.parent.relative_to(sweep_dir).as_posix(),
            )
        )
    return sorted(rows, key=lambda row: (row.job, row.dir))


def write_csv(rows: list[JobRow], path: Path) -> None:
    """The rows as CSV, one line per job, every column (empty where there is no value)."""
    names = [f.name for f in fields(JobRow)]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for row in rows:
            values = asdict(row) | {"overrides": " ".join(row.overrides)}
            writer.writerow({k: "" if v is None else v for k, v in values.items()})


def _varying(rows: list[JobRow]) -> list[str]:
    """Each job's overrides reduced to those that differ between jobs: what the sweep swept."""
    parsed = [{o.partition("=")[0]: o for o in row.overrides} for row in rows]
    keys = {k for p in parsed for k in p}
    swept = {k for k in keys if len({p.get(k) for p in parsed}) > 1} if len(rows) > 1 else keys
    return [" ".join(o for k, o in p.items() if k in swept) for p in parsed]


def table(rows: list[JobRow], title: str) -> Any:
    """A rich table of the jobs; accuracy columns only when some job reports an accuracy."""
    from rich.table import Table
    from rich.text import Text

    def acc(value: float | None) -> str:
        return "–" if value is None else f"{value:.2%}"

    with_acc = any(r.val_acc is not None or r.test_acc is not None for r in rows)
    out = Table(title=Text(title))
    out.add_column("job", justify="right", no_wrap=True)
    out.add_column("overrides", overflow="fold", min_width=20)
    if with_acc:
        out.add_column("val acc", justify="right", no_wrap=True)
        out.add_column("test acc", justify="right", no_wrap=True)
    out.add_column("wall", justify="right", no_wrap=True)
    out.add_column("status")  # a failed job's error is in its log above and in sweep.csv
    for row, swept in zip(rows, _varying(rows), strict=True):
        exit_code = f" (exit {row.exit_code})" if row.exit_code else ""
        status = Text(row.status + exit_code, style="red" if row.exit_code else "")
        accs = [acc(row.val_acc), acc(row.test_acc)] if with_acc else []
        wall = "–" if row.wall_s is None else f"{row.wall_s:.1f} s"
        # Text, not markup: overrides such as backends=[naive] are not style tags.
        out.add_row(str(row.job), Text(swept), *accs, wall, status)
    return out


def summarize(sweep_dir: Path, console: Any = None) -> int:
    """Print the sweep's table, write ``sweep.csv`` in it; return the worst job exit code.

    A sweep that ran no job (``--cfg``, or nothing under ``sweep_dir``) prints and writes
    nothing and returns 0.
    """
    from rich.console import Console

    rows = collect(sweep_dir) if sweep_dir.is_dir() else []
    if not rows:
        return 0
    write_csv(rows, sweep_dir / CSV)
    failed = sum(r.exit_code != 0 for r in rows)
    title = f"Sweep: {len(rows)} jobs" + (f", {failed} failed" if failed else "")
    console = console or Console()
    console.print(table(rows, title))
    console.print(f"The same rows, with every override and error: {sweep_dir / CSV}", markup=False)
    return max(r.exit_code for r in rows)
