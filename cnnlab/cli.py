"""The ``cnnlab`` command line: one table of commands (:data:`COMMANDS`), wiring only.

Imports stay light here (Typer and rich): numpy, torch and Hydra load inside commands so that
``cnnlab --help`` starts fast.
"""

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import typer

from cnnlab import __version__, runtime
from cnnlab.console import wide_when_piped
from cnnlab.errors import reported

# Groups whose options differ in ways a name does not tell: --help shows each one's description.
DESCRIBED = ("init",)


def _groups_epilog(groups: dict[str, str]) -> str:
    """An epilog listing config groups and their options, read from the config folder."""
    from cnnlab.config import group_options, option_summary

    lines = ["[b]Config groups[/b] (group=option):\n"]
    for group, note in groups.items():
        lines.append(f"  [cyan]{group}[/cyan]: {', '.join(group_options(group))}  {note}\n")
        if group in DESCRIBED:
            lines += [f"    {option_summary(group, o)}\n" for o in group_options(group)]
    return "\n".join(lines)


def _command_epilog(command: str, notes: dict[str, str] | None = None) -> str:
    """The config groups of ``command`` with their options and the defaults its config file
    chooses; ``notes`` adds a word on a group (or names one a model brings in: ``norm``)."""
    from cnnlab.config import group_defaults

    notes = notes or {}
    entries = {}
    for group, option in group_defaults(command).items():
        if group == "trainer":
            continue
        note = f"; {notes[group]}" if group in notes else ""
        entries[group] = f"(default: {option or 'none'}{note})"
    for group, note in notes.items():
        entries.setdefault(group, f"({note})")
    return _groups_epilog(entries)


app = typer.Typer(
    name="cnnlab",
    help="Learn, check and time convolutional networks built from scratch.\n\n"
    "Every command takes Hydra overrides after its name (key=value, group=option, +key=value); "
    "-m sweeps over comma-separated values; --cfg job prints the composed config without running.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    epilog=_groups_epilog(
        {
            "backend": "",
            "model": "",
            "norm": "(default: per model)",
            "init": "",
            "data": "",
            "optim": "",
            "experiment": "(train: presets of course runs)",
            "debug": "(train: shrink any run)",
            "layer": "(gradcheck)",
        }
    ),
)

HYDRA_ARGS = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "help_option_names": ["-h", "--help"],
}


def _complete(command: str) -> Callable[[typer.Context, str], list[str]]:
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        from cnnlab.completion import complete_overrides

        return complete_overrides(command, ctx.params.get("overrides") or [], incomplete)

    return complete


def _overrides_argument(command: str) -> typer.models.ArgumentInfo:
    return typer.Argument(
        help="Hydra overrides (key=value, group=option) and flags such as --cfg job.",
        show_default=False,
        autocompletion=_complete(command),
    )


Multirun = Annotated[
    bool, typer.Option("--multirun", "-m", help="Sweep: one job per combination of values.")
]
Verbose = Annotated[
    bool, typer.Option("--verbose", help="Show Hydra's full reports and tracebacks on errors.")
]


def _data_actions() -> list[str]:
    from cnnlab.schema import DataAction  # loads omegaconf: only when `cnnlab data` runs

    return [a.value for a in DataAction]


def _bench_targets() -> list[str]:
    from cnnlab.config import group_options

    return group_options("bench")


@dataclass(frozen=True)
class Positional:
    """A command's first argument, passed on as the override ``<key>=<value>``
    (``cnnlab bench conv`` is ``bench=conv``); ``choices`` lists the values it takes."""

    name: str
    key: str
    choices: Callable[[], list[str]]
    help: str


@dataclass(frozen=True)
class Command:
    """One ``cnnlab`` command: its name, the module with its ``check_config`` and ``task``
    (imported only when it runs), its help, notes on its config groups for the help's list,
    and its positional argument if it has one."""

    name: str
    module: str
    help: str
    notes: dict[str, str] = field(default_factory=dict)
    positional: Positional | None = None


COMMANDS = (
    Command(
        "train",
        "cnnlab.commands.train",
        """Train a model; log to TensorBoard; checkpoint; evaluate on the test split.

    Writes train.log, metrics.jsonl, results.json, TensorBoard events, checkpoints/ (last,
    best), history.png and filters.png to the run directory. Ctrl-C checkpoints and stops;
    [b]trainer.resume=<run dir>[/b] continues exactly where it stopped.
    [b]experiment=[/b] reproduces a course run, [b]debug=[/b] shrinks any run.

    Examples: [cyan]cnnlab train[/cyan],
    [cyan]cnnlab train model=lenet data=mnist data.root=../shared/datasets/mnist[/cyan],
    [cyan]cnnlab train -m optim.lr=0.1,0.01 init=xavier,kaiming[/cyan],
    [cyan]cnnlab train experiment=lenet_mnist data.root=../shared/datasets/mnist debug=fdr[/cyan],
    [cyan]cnnlab train -m hydra/launcher=joblib hydra.launcher.n_jobs=2 optim.lr=0.1,0.01[/cyan],
    [cyan]cnnlab train backend=torch trainer.devices=2[/cyan] (DistributedDataParallel)
    """,
        {"norm": "default: per model", "hparams_search": "with -m; needs the optuna extra"},
    ),
    Command(
        "lrfind",
        "cnnlab.commands.lrfind",
        """Find a learning rate: the range test, a sweep from tiny to huge rates.

    From fresh weights (drawn from [b]trainer.seed[/b]), one optimizer step per batch with a
    rate growing geometrically from [b]lrfind.min_lr[/b] to [b]lrfind.max_lr[/b] over
    [b]lrfind.steps[/b]; optim's schedule and warm-up are not used. Stops when the loss
    diverges. Suggests the rate of the steepest descent of the smoothed loss. Writes
    lrfind.json and lrfind.png to the run directory.

    Examples: [cyan]cnnlab lrfind[/cyan],
    [cyan]cnnlab lrfind model=lenet data=mnist data.root=../shared/datasets/mnist[/cyan],
    [cyan]cnnlab lrfind optim=adam backend=torch lrfind.steps=200[/cyan]
    """,
        {"norm": "default: per model"},
    ),
    Command(
        "eval",
        "cnnlab.commands.eval",
        """Evaluate a saved model: accuracy, per-class accuracy and the confusion matrix.

    [b]checkpoint=[/b] a run directory (its last checkpoint) or a .npz file;
    [b]split=[/b]test|val|train; [b]backend=[/b] evaluates the same weights on another backend.
    Writes eval.json.

    Example: [cyan]cnnlab eval checkpoint=outputs/2026-11-22/10-00-00.123456[/cyan]
    """,
        {"backend": "none keeps the run's"},
    ),
    Command(
        "gradcheck",
        "cnnlab.commands.gradcheck",
        r"""Check every layer's analytic gradients against numeric ones and torch autograd.

    Float64 inputs drawn from [b]trainer.seed[/b]; centred differences with step
    [b]gradcheck.step[/b]; per-tensor relative error ‖a − n‖ / (‖a‖ + ‖n‖). Prints a table,
    writes gradcheck.json to the run directory and exits 1 if any check fails.
    [b]trainer.precision[/b]=bf16-mixed checks the torch layers under autocast instead.

    [b]backends[/b]=all | \[naive,im2col,torch,cuda,user] (any subset); unavailable ones are
    skipped. [b]user.file[/b]=my_layers.py checks your own layers (CS231n or EECS 498 style).

    Examples: [cyan]cnnlab gradcheck layer=batchnorm[/cyan],
    [cyan]cnnlab gradcheck -m layer=conv,maxpool backends=\[naive],\[im2col][/cyan],
    [cyan]cnnlab gradcheck backends=\[im2col,user] user.file=my_layers.py[/cyan]
    """,
        {"model": "none checks layers", "norm": "with model="},
    ),
    Command(
        "summary",
        "cnnlab.commands.summary",
        """Show each layer's output shape, parameter count and FLOPs, and the totals.

    Needs no data files: [b]data=[/b] only sets the input shape and class count. Writes
    summary.json (total_params, total_flops, layers) to the run directory.

    Examples: [cyan]cnnlab summary model=lenet data=mnist[/cyan],
    [cyan]cnnlab summary model=resnet18 model.stem=imagenet model.num_classes=1000[/cyan]
    """,
        {"norm": "default: per model"},
    ),
    Command(
        "data",
        "cnnlab.commands.data",
        """Fetch a real data set into [b]data.root[/b], or say what is there.

    Files on disk are checked by structure and official checksums; downloads by the official
    archive checksums. Nothing is written where the files are complete. [b]info[/b] exits 1
    when files are missing or bad.

    Examples: [cyan]cnnlab data download data=cifar10[/cyan],
    [cyan]cnnlab data info data=mnist data.root=../shared/datasets/mnist[/cyan]
    """,
        {"data": "shapes is generated: nothing to fetch"},
        Positional(
            "action",
            "action",
            _data_actions,
            "download: fetch missing files, checksum-verified; info: check what is on disk, "
            "download nothing.",
        ),
    ),
    Command(
        "bench",
        "cnnlab.commands.bench",
        r"""Time forward, backward and forward+backward on each backend, checked against torch.

    Median of [b]bench.runs[/b] after [b]bench.warmup[/b]; GFLOP/s, speed-up over naive, ratio
    to torch and the fraction of numpy's matrix-product rate. naive runs only within
    [b]bench.naive_budget_s[/b]. Writes bench.json, bench.csv and TensorBoard scalars; exits 1
    if a backend differs from torch. [b]trainer.precision[/b]=bf16-mixed times the torch
    backends under autocast.

    Examples: [cyan]cnnlab bench conv[/cyan],
    [cyan]cnnlab bench suite backends=\[im2col,torch][/cyan],
    [cyan]cnnlab bench model model=lenet data=mnist trainer.batch_size=128[/cyan]
    """,
        {"bench": "set by the target argument", "model": "bench model"},
        Positional(
            "target",
            "bench",
            _bench_targets,
            "conv (the course case), pool, batchnorm (staged and fused backward), layers "
            "(every layer), suite (the conv suite) or model (one training step of model=).",
        ),
    ),
)


def _run(command: Command, args: list[str] | None, multirun: bool, verbose: bool) -> None:
    """Launch ``command``'s Hydra task; a CnnlabError is one line and its exit code."""
    import importlib

    from cnnlab.config import launch

    if verbose:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    with reported(command.name, verbose):
        module = importlib.import_module(command.module)
        with wide_when_piped():
            code = launch(command.name, module, list(args or []), multirun)
    raise typer.Exit(code)


def _add(command: Command) -> None:
    """Add ``command`` to the app: its overrides, -m and --verbose, and its positional
    argument first where it has one (checked against its choices: one line, exit 2)."""
    overrides_type = Annotated[list[str] | None, _overrides_argument(command.name)]
    settings = {
        "name": command.name,
        "help": inspect.cleandoc(command.help),
        "context_settings": HYDRA_ARGS,
        "epilog": _command_epilog(command.name, command.notes),
    }
    p = command.positional
    if p is None:

        def run(
            overrides: overrides_type = None, multirun: Multirun = False, verbose: Verbose = False
        ) -> None:
            _run(command, overrides, multirun, verbose)

        app.command(**settings)(run)
        return

    def complete(incomplete: str) -> list[str]:
        return [c for c in p.choices() if c.startswith(incomplete)]

    first_type = Annotated[
        str | None,
        typer.Argument(help=p.help, show_default=False, autocompletion=complete, metavar=p.name),
    ]

    def run_with(
        first: first_type = None,
        overrides: overrides_type = None,
        multirun: Multirun = False,
        verbose: Verbose = False,
    ) -> None:
        if first not in p.choices():
            article = "an" if p.name[0] in "aeiou" else "a"
            given = f"unknown {p.name} '{first}'" if first else f"give {article} {p.name}"
            choices = ", ".join(p.choices())
            typer.secho(
                f"cnnlab {command.name}: {given}; choose from {choices}", fg="red", err=True
            )
            raise typer.Exit(2)
        _run(command, [f"{p.key}={first}", *(overrides or [])], multirun, verbose)

    app.command(**settings)(run_with)


for _command in COMMANDS:
    _add(_command)

# Commands with no config of their own, which read what runs left behind: Typer apps added
# whole under these names (their modules import Typer only, so --help stays fast).
APPS = {"runs": "cnnlab.commands.runs"}

for _name, _module in APPS.items():
    app.add_typer(importlib.import_module(_module).app, name=_name)

# Commands that run a saved model and print or write what they are asked for, with no run
# directory of their own: Typer commands whose key=value arguments are overrides of
# conf/<name>.yaml (see cnnlab.commands.saved; their modules import Typer only).
SAVED_MODEL_COMMANDS = {"predict": "cnnlab.commands.predict", "export": "cnnlab.commands.export"}

for _name, _module in SAVED_MODEL_COMMANDS.items():
    app.command(name=_name, context_settings={"help_option_names": ["-h", "--help"]})(
        importlib.import_module(_module).command
    )


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"cnnlab {__version__}")
        raise typer.Exit()


def main() -> None:
    """Console-script entry point."""
    runtime.sleep_idle_openblas_threads()  # before any command imports numpy
    app(prog_name="cnnlab")
