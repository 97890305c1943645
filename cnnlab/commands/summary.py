"""``cnnlab summary``: each layer's output shape, parameter count and FLOPs, and totals.

Works from the architecture alone (each layer knows its shapes, parameters and FLOPs), so it
needs no backend and no data files.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

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
        caption="FLOPs per sample, forward; multiply-adds of conv and linear counted as 2",
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
    for row in summary["layers"]:
        table.add_row(
            row["name"],
            row["layer"],
            "×".join(map(str, row["out_shape"])),
            f"{row['params']:,}" if row["params"] else "",
            _si(row["flops"]) if row["flops"] else "",
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
