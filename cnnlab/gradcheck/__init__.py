"""``cnnlab gradcheck``: analytic gradients against numeric differences and torch autograd."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cnnlab.errors import UsageError

log = logging.getLogger("cnnlab.gradcheck")


def check_config(cfg: Any) -> None:
    """Semantic checks the schema cannot express; raise UsageError before anything runs."""
    from cnnlab.backends import resolve_backends
    from cnnlab.gradcheck.layer_cases import LAYERS

    resolve_backends(cfg.backends)
    if cfg.layer.name not in ("all", *LAYERS):
        raise UsageError(
            f"layer={cfg.layer.name}: no such layer; choose from all, {', '.join(LAYERS)}"
        )
    g = cfg.gradcheck
    for key in ("step", "rtol_numeric", "rtol_torch", "atol_zero"):
        if not g[key] > 0:
            raise UsageError(f"gradcheck.{key} must be > 0, got {g[key]}")


def task(cfg: Any) -> int:
    """The Hydra task: run the checks, print the table, write gradcheck.json; exit code."""
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console
    from rich.progress import Progress

    from cnnlab.backends import resolve_backends
    from cnnlab.gradcheck.layer_cases import cases_for
    from cnnlab.gradcheck.report import render, verdict
    from cnnlab.gradcheck.run import Thresholds, check_layers
    from cnnlab.runtime import set_threads

    set_threads(cfg.trainer.threads)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    backends = resolve_backends(cfg.backends)
    cases = cases_for(cfg.layer.name)
    thresholds = Thresholds(**cfg.gradcheck)
    log.info(
        "gradcheck layer=%s on %s: %d cases, float64, step h=%g",
        cfg.layer.name,
        ", ".join(b.name for b in backends),
        len(cases),
        thresholds.step,
    )
    console = Console()
    records: list = []
    interrupted = False
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("checking", total=len(cases))
        try:
            for batch in check_layers(cases, backends, cfg.trainer.seed, thresholds):
                records += batch
                if batch and not batch[0].skipped:
                    progress.update(
                        bar, advance=1, description=f"{batch[0].layer}: {batch[0].variant}"
                    )
        except KeyboardInterrupt:
            interrupted = True
    render(records, console)
    path = out_dir / "gradcheck.json"
    path.write_text(json.dumps([r.as_dict() for r in records], indent=1))
    summary = verdict(records)
    failed = any(r.passed is False for r in records)
    (log.error if failed else log.info)("%s", summary)
    log.info("records written to %s", path)
    if interrupted:
        done = len({(r.layer, r.variant) for r in records if not r.skipped})
        log.warning(
            "interrupted after %d of %d cases; the records above are kept", done, len(cases)
        )
        return 130
    return 1 if failed else 0
