"""bench's outputs: the rich table, bench.json, bench.csv and TensorBoard scalars."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v * 1e3:.3g}"


def _x(v: float | None, fmt: str = "{:.3g}×") -> str:
    return "" if v is None else fmt.format(v)


def print_table(title: str, rows: list[dict[str, Any]], roofline: float) -> None:
    """The table; why a row was skipped or failed is printed under it, to keep rows short."""
    from rich.console import Console
    from rich.table import Table

    model = any(r["images_per_s"] is not None for r in rows)
    table = Table(title=f"{title} (roofline: numpy a @ b, {roofline:.1f} GFLOP/s)")
    columns = ["case", "backend", "fwd ms", "bwd ms", "fwd+bwd ms (min–max)", "GFLOP/s"]
    columns += ["roofline", "vs naive", "vs torch"]
    columns += ["images/s"] if model else []
    columns += ["status"]
    for c in columns:
        table.add_column(c, justify="left" if c in ("case", "backend", "status") else "right")
    colour = {"ok": "green", "skipped": "yellow", "failed": "red"}
    notes = []
    for r in rows:
        case = r["case"] + (f" {r['variant']}" if r["variant"] else "")
        both = ""
        if r["fwdbwd_s"] is not None:
            both = f"{_ms(r['fwdbwd_s'])} ({_ms(r['fwdbwd_min_s'])}–{_ms(r['fwdbwd_max_s'])})"
        elif r["naive_estimate_s"] is not None:
            both = f"~{_ms(r['naive_estimate_s'])} (est.)"
        cells = [case, r["backend"], _ms(r["fwd_s"]), _ms(r["bwd_s"]), both]
        cells += [_x(r["gflops"], "{:.2f}"), _x(r["roofline_frac"], "{:.0%}")]
        cells += [_x(r["speedup_vs_naive"]), _x(r["ratio_to_torch"])]
        cells += [_x(r["images_per_s"], "{:.1f}")] if model else []
        table.add_row(*cells, f"[{colour[r['status']]}]{r['status']}[/]")
        if r["reason"]:
            notes.append(f"{case} on {r['backend']}: {r['status']}: {r['reason']}")
    console = Console()
    if not console.is_terminal:  # a log or a pipe: rich would squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)


def write_json(path: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({**meta, "records": rows}, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_tensorboard(logdir: Path, rows: list[dict[str, Any]]) -> None:
    """One scalar per timed row and measure: ``bench/<case>[/<variant>]/<backend>/<key>``."""
    from cnnlab.train.tensorboard import TensorBoardWriter

    with TensorBoardWriter(logdir) as tb:
        for r in rows:
            case = (r["case"] + (f"/{r['variant']}" if r["variant"] else "")).replace(" ", "_")
            values = {
                f"bench/{case}/{r['backend']}/{k}": r[k]
                for k in ("fwd_s", "bwd_s", "fwdbwd_s", "gflops", "images_per_s")
                if r[k] is not None
            }
            if values:
                tb.scalars(values, 0)
