"""``cnnlab export RUN``: a saved model as a plain PyTorch module and as ONNX, checked.

Writes to ``--out`` (by default ``export/`` in the run directory, ``export-<name>/`` for a
checkpoint other than ``last.npz``):

- ``model.py``: :mod:`cnnlab.export.standalone` (needs torch only) with the run's layer tree
  as a literal ``SPEC``, and ``INPUT_SHAPE``, ``CLASSES``, ``MEAN``, ``STD`` and ``DTYPE``;
- ``model.pt``: the state dict of the module ``model.build()`` makes;
- ``model.onnx``: the same module through ``torch.onnx.export`` (float32, batch axis free),
  where the ``onnx`` extra is installed;
- ``export.json``: what was checked, and the differences found.

Then it runs the test split's first batch (``trainer.eval_batch_size`` images) through
cnnlab's model (on the run's backend, or ``backend=``; eval mode), through the files as a user
loads them, and through onnxruntime, and fails (exit 1) where a logit differs by more than
``--atol``. A run in a mixed precision is compared in float32 (``32-true``): the exported
module has no autocast.

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
from cnnlab.errors import RunError, UsageError, reported

if TYPE_CHECKING:
    from cnnlab.commands.eval import Plan

Items = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides, e.g. backend=torch (the logits checked against), data.root=<the "
        "run's data folder, if it moved>, trainer.eval_batch_size=64 (the images checked).",
        show_default=False,
        metavar="[KEY=VALUE]...",
        autocompletion=complete_items("export", images=False),
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="The folder to write to (default: export/ in the run directory).",
        show_default=False,
    ),
]
Atol = Annotated[
    float,
    typer.Option("--atol", min=0.0, help="The largest difference of a logit accepted."),
]
Onnx = Annotated[
    bool | None,
    typer.Option(
        "--onnx/--no-onnx",
        help="Write model.onnx, or not (default: where the onnx extra is installed: "
        "pip install 'cnnlab\\[onnx]').",
        show_default=False,
    ),
]


def command(
    run: Run = None,
    items: Items = None,
    out: Out = None,
    atol: Atol = 1e-5,
    onnx: Onnx = None,
    verbose: Verbose = False,
) -> None:
    """Export a saved model as a plain PyTorch module (model.py + model.pt) and ONNX.

    model.py needs torch only:
    [cyan]net = model.build(); net.load_state_dict(torch.load("model.pt"))[/cyan].
    model.onnx is written where the onnx extra is installed. Both are checked:
    their logits on the test split's first batch must match cnnlab's (on the
    run's backend, or [b]backend=[/b]) within [b]--atol[/b]; the largest
    differences are printed and written to export.json.

    Examples: [cyan]cnnlab export outputs/2026-11-22/10-00-00.123456[/cyan],
    [cyan]cnnlab export <run>/checkpoints/best.npz --out lenet-export[/cyan]
    """
    with reported("export", verbose):
        paths, overrides = split_items(items)
        if paths:
            raise UsageError(f"{paths[0]}: export takes overrides (key=value) after the run")
        cfg, saved = plan("export", run, overrides)
        folder = out if out is not None else default_out(saved.checkpoint.path)
        result = export(saved, folder, atol, onnx, int(cfg.trainer.eval_batch_size))
    for line in _report(result):
        typer.echo(line)


def default_out(checkpoint: Path) -> Path:
    """``<run>/export`` for a run's ``last.npz``, ``<run>/export-<name>`` for its other
    checkpoints; beside the file for a checkpoint outside a run's ``checkpoints/``."""
    folder = checkpoint.parent
    run = folder.parent if folder.name == "checkpoints" else folder
    return run / ("export" if checkpoint.name == "last.npz" else f"export-{checkpoint.stem}")


def export(
    saved: Plan, folder: Path, atol: float, onnx: bool | None, batch_size: int
) -> dict[str, Any]:
    """Write the files of the module (and, as ``onnx`` says, ONNX: None where the extra is
    installed) into ``folder`` and check their logits against cnnlab's; returns what
    ``export.json`` holds. A difference above ``atol`` is a RunError (the files stay, for a
    look)."""
    import dataclasses
    import json

    import numpy as np
    import torch

    from cnnlab.export import to_onnx
    from cnnlab.export.module import (
        MODULE_FILE,
        WEIGHTS_FILE,
        load_exported,
        load_weights,
        module_source,
        spec_of,
    )
    from cnnlab.export.standalone import build
    from cnnlab.precision import Precision

    missing = to_onnx.missing()
    if onnx and missing:
        raise UsageError(
            f"--onnx needs {', '.join(missing)}: pip install 'cnnlab[onnx]' (pip install -e "
            "'.[onnx]' in a checkout)"
        )
    wanted_onnx = not missing if onnx is None else onnx
    precision = Precision(saved.options.precision).reference
    saved = dataclasses.replace(
        saved, options=dataclasses.replace(saved.options, precision=precision.value)
    )
    restored = restore(saved)
    data, model = restored.data, restored.model
    dtype = precision.dtype
    spec = spec_of(model.net, model.in_shape)
    inputs = data.inputs.record()  # what checkpoints keep, in model.py's names
    constants = {
        "INPUT_SHAPE": inputs["shape"],
        "CLASSES": inputs["classes"],
        "MEAN": inputs["mean"],
        "STD": inputs["std"],
        "DTYPE": str(dtype),
    }
    origin = (
        f"Written by cnnlab export from {saved.checkpoint.path} ({saved.run.model.name} on "
        f"{data.name}, step {saved.checkpoint.step})."
    )
    net = build(spec, getattr(torch, str(dtype)))
    load_weights(net, saved.checkpoint.state)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission
        raise UsageError(f"--out {folder}: cannot make this folder ({exc.strerror})") from None
    (folder / MODULE_FILE).write_text(module_source(spec, constants, origin))
    torch.save(net.state_dict(), folder / WEIGHTS_FILE)

    x = data.test.x[:batch_size]
    if len(x) == 0:
        raise RunError("the test split is empty: nothing to check the export on")
    expected = restored.engine.predict(x).astype(np.float64)
    exported = load_exported(folder)
    with torch.no_grad():
        got = exported(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    diffs: dict[str, float | None] = {"torch": _max_abs(got, expected), "onnx": None}
    if wanted_onnx:
        path = folder / to_onnx.ONNX_FILE
        to_onnx.export(exported, torch.from_numpy(np.ascontiguousarray(x)), path)
        diffs["onnx"] = _max_abs(to_onnx.run(path, x), expected)
    result = {
        "checkpoint": str(saved.checkpoint.path),
        "step": saved.checkpoint.step,
        "model": saved.run.model.name,
        "data": data.name,
        "backend": saved.backend.name,
        "precision": precision.value,
        "folder": str(folder),
        "files": [MODULE_FILE, WEIGHTS_FILE] + ([to_onnx.ONNX_FILE] if wanted_onnx else []),
        "onnx_missing": [] if wanted_onnx else missing,
        "checked_images": len(x),
        "atol": atol,
        "max_abs_diff": diffs,
    }
    (folder / "export.json").write_text(json.dumps(result, indent=1))
    worse = {name: d for name, d in diffs.items() if d is not None and not d <= atol}
    if worse:
        shown = ", ".join(f"{name} by {d:.3g}" for name, d in worse.items())
        raise RunError(
            f"the exported logits differ from cnnlab's on {saved.backend.name}: {shown} "
            f"(more than --atol {atol:g}); the files are in {folder}"
        )
    return result


def _max_abs(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b)))


def _report(result: dict[str, Any]) -> list[str]:
    """The lines printed: what was written where, and each check's largest difference."""
    folder = Path(result["folder"])
    if folder.is_absolute() and folder.is_relative_to(Path.cwd()):
        folder = folder.relative_to(Path.cwd())
    lines = [
        f"{result['model']} at step {result['step']} exported to {folder}: "
        f"{', '.join(result['files'])}",
    ]
    against = (
        f"cnnlab on {result['backend']} ({result['precision']}), test split's first "
        f"{result['checked_images']} images"
    )
    for name, diff in result["max_abs_diff"].items():
        if diff is None:
            why = (
                f"needs {', '.join(result['onnx_missing'])} (pip install 'cnnlab[onnx]')"
                if result["onnx_missing"]
                else "--no-onnx"
            )
            lines.append(f"  model.onnx: not written ({why})")
            continue
        what = "model.py + model.pt" if name == "torch" else "model.onnx (onnxruntime)"
        lines.append(f"  {what}: max |logit difference| {diff:.3g} vs {against}")
    return lines
