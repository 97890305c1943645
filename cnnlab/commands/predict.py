"""``cnnlab predict RUN IMAGES...``: class probabilities of image files from a saved model.

Each image is read with Pillow, converted to the run's channels (grey or RGB), resized to its
input size and normalised with the mean and std of its training split, as the run's data were
(:mod:`cnnlab.data.images`). The checkpoint records those and the class names, so no data
files are read; a checkpoint from before they were recorded reads them from the run's data set.
The model runs on the run's backend, or ``backend=<name>``. A run
directory means its last checkpoint, as for ``cnnlab eval`` (the weights its results.json
reports); give ``<run>/checkpoints/best.npz`` for the best.

At import this module loads Typer and the standard library only (see
:mod:`cnnlab.commands.saved`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cnnlab.commands.saved import (
    Run,
    Verbose,
    complete_items,
    plan,
    restore,
    split_items,
)
from cnnlab.errors import UsageError, reported

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.commands.eval import Plan

Items = Annotated[
    list[str] | None,
    typer.Argument(
        help="Image files (PNG, JPEG, ...) and folders of them; and overrides, e.g. backend=torch.",
        show_default=False,
        metavar="IMAGES... [KEY=VALUE]...",
        autocompletion=complete_items("predict", images=True),
    ),
]
Top = Annotated[
    int, typer.Option("--top", "-k", min=1, help="How many of the most probable classes to show.")
]
Json = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON object (every class's probability) instead."),
]


def command(
    run: Run = None,
    items: Items = None,
    top: Top = 5,
    as_json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Class probabilities of image files, from a saved model: most probable first.

    Each image is converted to the run's channels (grey or RGB), resized to its
    input size and normalised as the run's data were (the mean and std of its
    training split, which the checkpoint records: no data files are needed). A run
    directory means its last checkpoint, as for eval.
    [b]backend=[/b] runs the model on another backend.

    Examples: [cyan]cnnlab predict outputs/2026-11-22/10-00-00.123456 seven.png[/cyan],
    [cyan]cnnlab predict <run>/checkpoints/best.npz digits/ -k 3 --json[/cyan]
    """
    from cnnlab.data.images import image_files

    with reported("predict", verbose):
        paths, overrides = split_items(items)
        if run is not None and not paths:
            raise UsageError("give one or more image files or folders after the run")
        files = image_files(paths)  # a path that is not there: before anything is read
        cfg, saved = plan("predict", run, overrides)
        result = predict(saved, files, top, int(cfg.trainer.eval_batch_size))
    if as_json:
        import json

        typer.echo(json.dumps(result, indent=1))
    else:
        _print_tables(result)


def predict(saved: Plan, files: list[Path], top: int, batch_size: int) -> dict[str, Any]:
    """Every class's probability for each image file, with the ``top`` most probable: the
    object ``--json`` prints."""
    import numpy as np

    from cnnlab.commands.eval import rebuild
    from cnnlab.data import normalised
    from cnnlab.data.images import read_image
    from cnnlab.precision import Precision

    inputs = saved.checkpoint.inputs
    if inputs is None:  # an older checkpoint: its data set gives them
        restored = restore(saved)
        inputs, engine = restored.data.inputs, restored.engine
    else:
        engine = rebuild(saved, inputs.shape)[1]
    images = [read_image(path, inputs.shape) for path in files]
    x = normalised(np.stack([image.pixels for image in images]), inputs.mean, inputs.std)
    x = x.astype(Precision(saved.options.precision).dtype)
    logits = np.concatenate(
        [engine.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )
    probs = _softmax(logits.astype(np.float64))
    classes = inputs.classes
    k = min(top, len(classes))
    return {
        "checkpoint": str(saved.checkpoint.path),
        "step": saved.checkpoint.step,
        "model": saved.run.model.name,
        "backend": saved.backend.name,
        "data": inputs.name,
        "classes": classes,
        "images": [
            {
                "file": str(image.path),
                "mode": image.mode,
                "size": list(image.size),
                "top": [
                    {"class": classes[c], "index": int(c), "probability": float(p[c])}
                    for c in np.argsort(-p, kind="stable")[:k]
                ],
                "probabilities": [float(v) for v in p],
            }
            for image, p in zip(images, probs, strict=True)
        ],
    }


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, shifted by each row's maximum."""
    import numpy as np

    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _print_tables(result: dict[str, Any]) -> None:
    """A table per image: its most probable classes with their probabilities and a bar."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cnnlab.console import wide_when_piped

    with wide_when_piped():
        console = Console()
        console.print(
            f"{result['model']} at step {result['step']} ({Path(result['checkpoint']).name}) "
            f"on {result['backend']}: {result['data']}, {len(result['classes'])} classes"
        )
        for image in result["images"]:
            w, h = image["size"]
            title = f"{escape(image['file'])} ({image['mode']} {w}x{h})"
            table = Table(title=title, title_justify="left")
            for column, justify in (("#", "right"), ("class", "left"), ("probability", "right")):
                table.add_column(column, justify=justify)  # type: ignore[arg-type]
            table.add_column("", justify="left")
            for rank, row in enumerate(image["top"], start=1):
                p = row["probability"]
                shown = f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"
                table.add_row(str(rank), escape(row["class"]), shown, "█" * round(20 * p))
            console.print(table)
