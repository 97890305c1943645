"""``cnnlab runs``: a table of the training runs under some folders; ``cnnlab runs compare``: a
few of them side by side.

Unlike the other commands these take no Hydra config: they read what runs left behind
(:mod:`cnnlab.runs`). So this module is a Typer app of its own, which :mod:`cnnlab.cli` adds
under the name ``runs``. At import it loads Typer and :mod:`cnnlab.runs` (which needs only the
standard library), for a fast ``cnnlab --help``; rich, PyYAML and matplotlib load when a
command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cnnlab.errors import UsageError, reported
from cnnlab.runs.status import STATUSES
from cnnlab.runs.table import DEFAULT_FOLDERS, SORTS

# Where `cnnlab runs compare` writes its plot unless --plot says: the current directory, so
# that comparing runs never writes into one of them.
DEFAULT_PLOT = Path("compare.png")


class _ListByDefault(TyperGroup):
    """``cnnlab runs [FOLDER...]`` is ``cnnlab runs list [FOLDER...]``: a first argument that
    is neither a subcommand nor ``--help`` (a folder, an option such as ``--sort``) runs
    ``list``. A folder named like a subcommand is given as ``./compare``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ListByDefault,
    help="List training runs with their status and metrics, or compare a few.\n\n"
    "[cyan]cnnlab runs[/cyan] lists the runs under outputs/ and multirun/ (or the folders "
    "given); [cyan]cnnlab runs compare A B[/cyan] shows what differs between runs.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated option values as one list (``--status failed,diverged``)."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _console() -> Any:
    """A console for stdout: the terminal's width, or wide enough for any table when piped."""
    from rich.console import Console

    from cnnlab.console import wide_when_piped

    with wide_when_piped():
        return Console()


Folders = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Folders searched for run directories, at any depth (default: outputs multirun).",
        show_default=False,
    ),
]


@app.command("list")
def list_runs(
    folders: Folders = None,
    sort: Annotated[
        str, typer.Option(help=f"Sort by: {', '.join(SORTS)} (val, test, epochs: best first).")
    ] = "start",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order.")] = False,
    status: Annotated[
        list[str] | None,
        typer.Option(help=f"Only runs with this status ({', '.join(STATUSES)}); several: a,b."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="Only runs of this model; several: a,b.")
    ] = None,
    backend: Annotated[
        list[str] | None, typer.Option(help="Only runs on this backend; several: a,b.")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="Only runs whose config has key=value (optim.lr=0.01); repeatable: and."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the rows as CSV.")] = False,
) -> None:
    """A table of training runs (the default: cnnlab runs [FOLDER...]).

    Columns: name, start, model, backend, overrides, epochs, best validation
    accuracy, test accuracy, wall time and status (completed, diverged,
    interrupted, failed or running). Searches outputs/ and multirun/ (or the
    folders given) at any depth; runs of other commands are left out.

    Examples: [cyan]cnnlab runs[/cyan],
    [cyan]cnnlab runs multirun --sort val --status completed[/cyan],
    [cyan]cnnlab runs --where optim.name=adam --csv > runs.csv[/cyan]
    """
    from cnnlab.runs.table import as_csv as csv_text
    from cnnlab.runs.table import as_json as json_text
    from cnnlab.runs.table import collect, ordered, select, table, where_clause

    with reported("runs"):
        if as_json and as_csv:
            raise UsageError("--json and --csv: give one of them")
        given = list(folders or [])
        searched = given or [f for f in DEFAULT_FOLDERS if f.is_dir()]
        runs = collect(searched)
        shown = select(
            runs,
            _split(status),
            _split(model),
            _split(backend),
            [where_clause(w) for w in where or []],
        )
        shown = ordered(shown, sort, reverse)
    if as_json:
        typer.echo(json_text(shown))
    elif as_csv:
        typer.echo(csv_text(shown), nl=False)
    elif not runs:
        places = " ".join(str(f) for f in given or DEFAULT_FOLDERS)
        typer.echo(f"No training runs under {places}.")
    else:
        count = f"{len(runs)} runs" if len(shown) == len(runs) else f"{len(shown)} of {len(runs)}"
        console = _console()
        console.print(table(shown, f"Training runs: {count}", console.width))


@app.command("compare")
def compare_runs(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Two run directories or more.", show_default=False)
    ],
    plot: Annotated[
        Path,
        typer.Option(help="The PNG of their validation curves (default: in the current folder)."),
    ] = DEFAULT_PLOT,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the comparison as JSON (the plot is written).")
    ] = False,
) -> None:
    """Runs side by side: the config keys that differ, metrics, validation curves.

    Shows the keys whose values differ between the runs, their metrics, and
    writes one plot of their validation accuracy and loss against epoch. Keys
    are the dotted keys of the composed configs (.hydra/config.yaml), less
    Hydra's and those that do not change what a run trains (trainer.resume,
    trainer.overwrite, trainer.threads, data.root, how often it logs and which
    checkpoints it keeps).

    Example: [cyan]cnnlab runs compare multirun/2026-12-06/10-00-00.0/0
    multirun/2026-12-06/10-00-00.0/1 --plot lr.png[/cyan]
    """
    import json

    from cnnlab.runs.compare import as_dict, differing, load, tables
    from cnnlab.runs.compare import plot as plot_curves

    with reported("runs compare"):
        runs = load(run_dirs)
        keys = differing(runs)
        try:
            drawn = plot_curves(runs, plot)
        except OSError as exc:
            raise UsageError(f"--plot {plot}: cannot write it ({exc.strerror or exc})") from None
    if as_json:
        typer.echo(json.dumps(as_dict(runs, keys, plot if drawn else None), indent=1))
        return
    console = _console()
    for out in tables(runs, keys):
        console.print(out)
    if not keys:
        typer.echo("Their configs are the same, apart from the keys left out (see --help).")
    typer.echo(f"Plot: {plot}" if drawn else "No plot: no run has a validation value yet.")
