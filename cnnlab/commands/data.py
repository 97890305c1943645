"""``cnnlab data download|info``: fetch a real data set, or say what is on disk.

``info`` downloads nothing: it checks every file in ``data.root`` (structure, official
checksums) and prints one row per file, then the classes and counts; its exit code is 1 when
files are missing or bad. ``download`` fetches what is missing (checksum-verified) and then
checks everything the same way; with the files already complete it writes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import RunError

if TYPE_CHECKING:
    from cnnlab.schema import DataCommandConfig

log = logging.getLogger("cnnlab.data")


def check_config(cfg: DataCommandConfig) -> None:
    """The action and the data options, checked before anything runs."""
    from cnnlab.data import check_config as check_data

    check_data(cfg.data)


def task(cfg: DataCommandConfig, plan: None = None) -> int:
    """The Hydra task: download and/or report; the exit code says whether the data is usable."""
    check_config(cfg)  # nothing built to share: checked again, at no cost
    from cnnlab.data import source

    data = cfg.data
    module = source(data.name)
    if not hasattr(module, "scan"):  # generated data: nothing on disk
        log.info(
            "%s is generated from trainer.seed (%d train, %d test images): no files to %s",
            data.name,
            data.train_size,
            data.test_size,
            "download" if cfg.action == "download" else "check",
        )
        return 0
    root = Path(data.root).expanduser().resolve()
    if cfg.action == "download":
        fetched = module.fetch(data)
        if not fetched:
            log.info("%s is already in %s: nothing downloaded", data.name, root)
    states, raw = module.scan(data)
    _print_table(f"{data.name} in {root}", states, root)
    if raw is None:
        if cfg.action == "download":  # the line that training would end with
            raise RunError(module.explain(data, states))
        missing = sum(s.status == "missing" for s in states)
        bad = sum(not s.usable for s in states) - missing
        message = f"{data.name} in {root} is not usable: {missing} file(s) missing, {bad} bad"
        hint = "; `cnnlab data download` fetches missing files" if missing else ""
        log.error("%s%s", message, hint)
        return 1
    log.info(
        "%s: %d train and %d test images of %s; %d classes: %s",
        data.name,
        len(raw.y_train),
        len(raw.y_test),
        "×".join(map(str, raw.x_train.shape[1:])),
        len(raw.classes),
        ", ".join(raw.classes),
    )
    verified = all(s.status == "verified" for s in states)
    log.info("checksums: %s", "all official" if verified else "not all known (structure checked)")
    return 0


def _print_table(title: str, states: list[Any], root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from cnnlab.data import shown_path

    colour = {"verified": "green", "valid": "cyan", "missing": "yellow", "bad": "red"}
    table = Table(title=title, title_justify="left")
    for column in ("file", "status", "detail"):
        table.add_column(column)
    for state in states:
        style = colour.get(state.status, "")
        name = shown_path(state.path, root)
        table.add_row(name, f"[{style}]{state.status}[/{style}]", state.detail)
    Console().print(table)
