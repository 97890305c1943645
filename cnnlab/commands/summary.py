"""``cnnlab summary``: each layer's output shape, parameter count and FLOPs, and totals.

Works from the architecture alone (each layer knows its shapes, parameters and FLOPs), so it
needs no backend and no data files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.ops.structure import Sequential
    from cnnlab.schema import SummaryConfig

log = logging.getLogger("cnnlab.summary")


def input_shape(cfg: SummaryConfig) -> tuple[int, ...]:
    """The per-sample input shape (C, H, W) that the data config states."""
    return tuple(int(n) for n in cfg.data.shape)


def check_config(cfg: SummaryConfig) -> Sequential:
    """The layer tree (the plan): an impossible model/data combination fails here."""
    from cnnlab.models import build_net

    return build_net(cfg.model, cfg.norm, input_shape(cfg), act=cfg.act)


def table_rows(summary: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The layers' rows with the nested rows of branch containers and their branches placed
    before the layers inside them (each at its ``at``)."""
    nested = summary["branches"]
    k = 0
    for i, row in enumerate([*summary["layers"], None]):
        while k < len(nested) and nested[k]["at"] == i:
            yield nested[k]
            k += 1
        if row is not None:
            yield row


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def task(cfg: SummaryConfig, net: Sequential | None = None) -> int:
    """The Hydra task: print the table and write summary.json."""
    from rich.console import Console
    from rich.table import Table

    from cnnlab.config import run_dir
    from cnnlab.ops.tree import summarize

    in_shape = input_shape(cfg)
    net = net or check_config(cfg)
    summary = {"model": cfg.model.name, "norm": cfg.norm.name, "act": cfg.act.name}
    summary |= {"data": cfg.data.name}
    summary |= summarize(net, in_shape)
    table = Table(
        title=f"{cfg.model.name} on {cfg.data.name} {tuple(in_shape)}, norm={cfg.norm.name}, "
        f"act={cfg.act.name}",
        title_justify="left",
        caption="FLOPs per sample, forward; multiply-adds of conv and linear counted as 2; "
        "indented: the branches of a block (the block's row: their combined output)",
        caption_justify="left",
    )
    for column, justify in [
        ("layer", "left"),
        ("type", "left"),
        ("output", "left"),
        ("params", "right"),
        ("FLOPs", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    # Rows inside a branch container (an Inception module, a residual block) are indented;
    # the container's row gives the combined output, each branch's row its own.
    for row in table_rows(summary):
        table.add_row(
            "  " * row["depth"] + row["name"],
            row["layer"],
            "×".join(map(str, row["out_shape"])),
            f"{row['params']:,}" if row.get("params") else "",
            _si(row["flops"]) if row.get("flops") else "",
            style="bold" if "at" in row else None,  # a block's or a branch's own row
        )
    table.add_section()
    table.add_row("total", "", "", f"{summary['total_params']:,}", _si(summary["total_flops"]))
    Console().print(table)
    path = run_dir() / "summary.json"
    path.write_text(json.dumps(summary, indent=1))
    log.info(
        "%s: %s parameters, %s FLOPs per sample; written to %s",
        cfg.model.name,
        f"{summary['total_params']:,}",
        _si(summary["total_flops"]),
        path,
    )
    return 0
