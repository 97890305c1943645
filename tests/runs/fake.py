"""Run directories written by hand, as ``cnnlab train`` leaves them, for tests that need many
runs in known states without training any."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def config(
    model: str = "threelayer", backend: str = "im2col", lr: float = 0.02, **trainer: Any
) -> dict[str, Any]:
    """A small composed config: what the tests read of one is its model, backend, optimizer
    and trainer keys."""
    return {
        "trainer": {"seed": 0, "epochs": 2, "threads": 1, "resume": None, "overwrite": False}
        | trainer,
        "model": {"name": model, "widths": [8, 16]},
        "backend": {"name": backend},
        "optim": {"name": "momentum", "lr": lr},
        "data": {"name": "shapes", "root": None},
    }


def fake_run(
    where: Path,
    cfg: dict[str, Any] | None = None,
    overrides: list[str] = (),
    job: str = "train",
    run: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    val_accs: list[float | None] = (),
) -> Path:
    """A run directory at ``where``: Hydra's record (config, overrides, job name), and the
    run.json, results.json and metrics.jsonl epoch lines given (none where None or empty)."""
    hydra = where / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(yaml.safe_dump(cfg or config()))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"name": job}}}))
    if run is not None:
        (where / "run.json").write_text(json.dumps(run))
    if results is not None:
        (where / "results.json").write_text(json.dumps(results))
    lines = [
        {
            "kind": "epoch",
            "epoch": i + 1,
            "val_acc": acc,
            "val_loss": None if acc is None else 1 - acc,
        }
        for i, acc in enumerate(val_accs)
    ]
    if lines:
        (where / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return where
