"""bench's outputs: the rich tables, bench.json, bench.csv and TensorBoard scalars."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.bench.profile import OTHER

if TYPE_CHECKING:
    from rich.console import Console


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v * 1e3:.3g}"


def _x(v: float | None, fmt: str = "{:.3g}×") -> str:
    return "" if v is None else fmt.format(v)


def _mib(v: int | None) -> str:
    return "" if v is None else f"{v / 2**20:.1f}"


def _console() -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a log or a pipe: rich would squeeze the table into 80 columns
        console = Console(width=160)
    return console


def print_table(title: str, rows: list[dict[str, Any]], roofline: float) -> None:
    """The table; why a row was skipped or failed is printed under it, to keep rows short."""
    from rich.table import Table

    model = any(r["images_per_s"] is not None for r in rows)
    memory = any(r["peak_mem_bytes"] is not None for r in rows)
    table = Table(title=f"{title} (roofline: numpy a @ b, {roofline:.1f} GFLOP/s)")
    columns = ["case", "backend", "fwd ms", "bwd ms", "fwd+bwd ms (min–max)", "GFLOP/s"]
    columns += ["roofline", "vs naive", "vs torch"]
    columns += ["images/s"] if model else []
    columns += ["peak MiB"] if memory else []
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
        cells += [_mib(r["peak_mem_bytes"])] if memory else []
        table.add_row(*cells, f"[{colour[r['status']]}]{r['status']}[/]")
        if r["reason"]:
            notes.append(f"{case} on {r['backend']}: {r['status']}: {r['reason']}")
    console = _console()
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)


# Width of the share bars in the per-layer tables: the largest share fills it.
_BAR = 20


def print_layers(rows: list[dict[str, Any]]) -> None:
    """One table per profiled row (``bench model``): each layer's forward, backward, share of
    the step (with a bar, to find the heavy layers among ResNet-18's sixty) and GFLOP/s."""
    from rich.table import Table

    console = _console()
    for r in rows:
        if not r["layers"]:
            continue
        layers = r["layers"]
        step = sum(layer["total_s"] for layer in layers)
        table = Table(
            title=f"{r['case']} on {r['backend']}, batch {r['batch']}: where a training step "
            f"goes ({_ms(step)} ms, profiled apart from the timed steps)",
            caption=f"{OTHER}: what no layer runs: the loss, the update, residual sums, "
            "dropout masks, the executor's own work",
        )
        for c in ["layer", "type", "fwd ms", "bwd ms", "fwd+bwd ms", "share", "", "GFLOP/s"]:
            table.add_column(c, justify="left" if c in ("layer", "type", "") else "right")
        top = max(layer["share"] for layer in layers)
        for layer in layers:
            fwd, bwd = layer["fwd_s"], layer["bwd_s"]
            cells = [layer["name"], layer["layer"] or "", _ms(fwd), _ms(bwd), _ms(layer["total_s"])]
            cells += [f"{layer['share']:.1%}", "█" * round(_BAR * layer["share"] / top)]
            cells += [_x(layer["gflops"], "{:.2f}")]
            table.add_row(*cells, end_section=layer is layers[-2])
        console.print(table)


def write_json(path: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({**meta, "records": rows}, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """bench.json's records, one line each, without the nested per-layer profile."""
    if not rows:
        path.write_text("")
        return
    flat = [{k: v for k, v in r.items() if k != "layers"} for r in rows]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)


# bench.json's measures as TensorBoard scalars, in the console's units (TensorBoard shows four
# decimals: seconds would read 0.0012).
_TB_MEASURES = {
    "fwd_s": ("fwd_ms", 1e3),
    "bwd_s": ("bwd_ms", 1e3),
    "fwdbwd_s": ("fwdbwd_ms", 1e3),
    "gflops": ("gflops", 1.0),
    "images_per_s": ("images_per_s", 1.0),
    "peak_mem_bytes": ("peak_mib", 2.0**-20),
}


def write_tensorboard(logdir: Path, title: str, rows: list[dict[str, Any]]) -> None:
    """The table as Markdown text (tag ``bench/table``, in ``logdir``), and each backend's
    measures as scalars of a run of its own (``logdir/<backend>``), tagged
    ``bench/<case>[/<variant>]/<measure>``: a case's card then shows every backend's point in
    its own colour."""
    from cnnlab.train.tensorboard import TensorBoardWriter

    with TensorBoardWriter(logdir) as tb:
        tb.text("bench/table", markdown_table(title, rows), 0)
    for backend in dict.fromkeys(r["backend"] for r in rows):
        with TensorBoardWriter(logdir / backend) as tb:
            for r in rows:
                if r["backend"] != backend:
                    continue
                case = (r["case"] + (f"/{r['variant']}" if r["variant"] else "")).replace(" ", "_")
                values = {
                    f"bench/{case}/{name}": r[key] * scale
                    for key, (name, scale) in _TB_MEASURES.items()
                    if r[key] is not None
                }
                if values:
                    tb.scalars(values, 0)


def markdown_table(title: str, rows: list[dict[str, Any]]) -> str:
    """The console table's main columns as Markdown, in ms."""
    lines = [
        f"**{title}**",
        "",
        "| case | backend | fwd ms | bwd ms | fwd+bwd ms | GFLOP/s | vs torch | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        case = r["case"] + (f" {r['variant']}" if r["variant"] else "")
        cells = [case, r["backend"], _ms(r["fwd_s"]), _ms(r["bwd_s"]), _ms(r["fwdbwd_s"])]
        cells += [_x(r["gflops"], "{:.2f}"), _x(r["ratio_to_torch"]), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
