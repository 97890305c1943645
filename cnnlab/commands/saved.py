"""What ``cnnlab predict`` and ``cnnlab export`` share: they run a saved model, as eval does,
and print or write what they were asked for, with no run directory of their own.

So each is a Typer command (added by :mod:`cnnlab.cli`) rather than a Hydra job: its first
argument names the run, the arguments after it are paths (images, folders) and ``key=value``
overrides of ``conf/<command>.yaml`` in any order, and its options are Typer's (``-k``,
``--json``, ``--out``). The overrides are composed and checked as every command's are
(one line, exit code 2), and :func:`cnnlab.commands.eval.check_config` reads the checkpoint
and checks the backend. At import this module loads Typer and the standard library only, for
a fast ``cnnlab --help``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnlab.errors import UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cnnlab.commands.eval import Plan, Restored

# key=value, +key=value, ~key, group=option, group@package=option: an override, unless a file
# or folder of that name exists (an image named a=b.png).
OVERRIDE = re.compile(r"[+~]?[A-Za-z_][\w-]*(?:[./][\w-]+)*(?:@[\w./-]+)?=")


def complete_items(command: str, images: bool) -> Callable[[typer.Context, str], list[str]]:
    """Tab completion of the arguments after the run: overrides of ``conf/<command>.yaml``;
    with ``images``, paths are left to the shell where the word starts one."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        from cnnlab.completion import complete_overrides, complete_overrides_or_paths

        previous = ctx.params.get("items") or []
        if images:
            return complete_overrides_or_paths(command, previous, incomplete)
        return complete_overrides(command, previous, incomplete)

    return complete


Run = Annotated[
    str | None,
    typer.Argument(
        help="A run directory (its checkpoints/last.npz, as for cnnlab eval) or a .npz "
        "checkpoint such as <run>/checkpoints/best.npz.",
        show_default=False,
        metavar="RUN",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", help="Show the full traceback of an error.")]


def split_items(items: list[str] | None) -> tuple[list[str], list[str]]:
    """The arguments after the run as (paths, overrides)."""
    paths, overrides = [], []
    for item in items or []:
        if OVERRIDE.match(item) and not Path(item).expanduser().exists():
            overrides.append(item)
        else:
            paths.append(item)
    return paths, overrides


def plan(command: str, run: str | None, overrides: list[str]) -> tuple[DictConfig, Plan]:
    """The composed config of ``command`` and eval's plan for the saved model ``run``."""
    from cnnlab.commands.eval import check_config
    from cnnlab.config import compose, quoted

    if not run:
        raise UsageError("give the run: a run directory or a .npz checkpoint")
    given = [o for o in overrides if o.lstrip("+~").partition("=")[0] == "checkpoint"]
    if given:
        raise UsageError(f"{given[0]}: give the run as the first argument, not as checkpoint=")
    cfg = compose(command, [*overrides, f"checkpoint={quoted(run)}"], with_hydra=True)
    return cfg, check_config(cfg)


def restore(saved: Plan) -> Restored:
    """The run's model and data (its normalisation, its test split), read where the run read
    them: nothing is downloaded, and files that are not there say how to point at them."""
    from omegaconf import OmegaConf

    from cnnlab.commands.eval import restore as restore_run
    from cnnlab.errors import RunError

    OmegaConf.update(saved.run, "data.download", False, force_add=True)
    try:
        return restore_run(saved)
    except RunError as exc:
        raise RunError(
            f"{exc} (the run's data give its normalisation: data.root=<folder> if they moved)"
        ) from None
