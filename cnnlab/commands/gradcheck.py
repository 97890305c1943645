"""``cnnlab gradcheck``: analytic gradients against numeric differences and torch autograd.

Without ``model=`` it checks the cases of the registered layer kinds (:mod:`cnnlab.ops`); with
``model=`` it checks that whole model end to end (:mod:`cnnlab.gradcheck.model_check`). Checks
run in float64 whatever ``trainer.precision`` stores runs in, except in a mixed precision, which
checks the torch backends under autocast (:mod:`cnnlab.gradcheck.run`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cnnlab.backends import BackendOptions

if TYPE_CHECKING:
    from cnnlab.backends import Backend
    from cnnlab.gradcheck.model_check import ModelProblem
    from cnnlab.gradcheck.run import Thresholds
    from cnnlab.schema import GradcheckConfig

log = logging.getLogger("cnnlab.gradcheck")


@dataclass(frozen=True)
class Plan:
    """The backends to check and, with ``model=``, the model problem (net, weights, batch)."""

    backends: list[Backend]
    problem: ModelProblem | None


def check_config(cfg: GradcheckConfig) -> Plan:
    """What the schema cannot express, checked before anything runs: one line, exit 2."""
    from cnnlab.backends import UserSource, resolve_backends

    backends = resolve_backends(cfg.backends, user=UserSource.of(cfg.user) is not None)
    if cfg.model is None:
        return Plan(backends, None)
    from cnnlab.gradcheck.model_check import make_problem

    return Plan(backends, make_problem(cfg))  # an impossible model/data fails here


def _layer_batches(
    cfg: GradcheckConfig, plan: Plan, thresholds: Thresholds, options: BackendOptions
) -> tuple[int, Iterator[list]]:
    from cnnlab.gradcheck.run import check_layers
    from cnnlab.ops import layer_cases

    cases = layer_cases(cfg.layer.name)
    backends = plan.backends
    if thresholds.mixed:
        log.info(
            "gradcheck layer=%s on %s: %d cases under autocast (%s) against torch in float64, "
            "tolerance %g",
            cfg.layer.name,
            ", ".join(b.name for b in backends),
            len(cases),
            thresholds.precision,
            thresholds.torch_rtol(),
        )
    else:
        log.info(
            "gradcheck layer=%s on %s: %d cases, float64, steps h=%g and 2h; cases over %d "
            "elements along %d random directions",
            cfg.layer.name,
            ", ".join(b.name for b in backends),
            len(cases),
            thresholds.step,
            thresholds.elementwise_max,
            thresholds.directions,
        )
    return len(cases), check_layers(cases, backends, cfg.trainer.seed, thresholds, options)


def _model_batches(
    cfg: GradcheckConfig, plan: Plan, thresholds: Thresholds, options: BackendOptions
) -> tuple[int, Iterator[list]]:
    from cnnlab.gradcheck.model_check import check_model
    from cnnlab.gradcheck.run import skipped_record

    backends, problem = plan.backends, plan.problem
    assert problem is not None  # model= given
    why = {b.name: _model_unusable(b, options) for b in backends}
    usable = [b for b in backends if why[b.name] is None]
    log.info(
        "gradcheck model=%s (%s) on %s: float64, steps h=%g and 2h, %d coordinates per tensor",
        problem.model,
        problem.variant,
        ", ".join(b.name for b in usable),
        thresholds.step,
        cfg.gradcheck.samples,
    )

    def report(backend: str, loss: float) -> None:
        expected = math.log(cfg.model.num_classes)
        log.info(
            "%s: initial loss %.4f (ln %d = %.4f)", backend, loss, cfg.model.num_classes, expected
        )

    def batches() -> Iterator[list]:
        for b in backends:
            reason = why[b.name]
            if reason is not None:
                yield [skipped_record(b, reason, model=problem.model)]
        yield from check_model(
            problem, usable, thresholds, cfg.gradcheck.samples, cfg.trainer.seed, report, options
        )

    steps = sum(len(problem.params) + (b.name != "torch") for b in usable)
    return steps, batches()


# Through a whole model, 16-bit rounding moves units across ReLU's kink and batch norm divides
# by small deviations: its gradients differ from float64 by more than a tolerance that would
# still catch a wrong one, so mixed precisions are checked layer by layer only.
WHOLE_MODEL = "whole-model checks run in 32/64-bit; a mixed precision is checked layer by layer"


def _model_unusable(backend: Backend, options: BackendOptions) -> str | None:
    """Why ``backend`` takes no part in a whole-model check, or None."""
    from cnnlab.precision import Precision

    reason = options.unusable(backend)
    if reason is None and Precision(options.precision).mixed:
        return WHOLE_MODEL
    return reason


def task(cfg: GradcheckConfig, plan: Plan | None = None) -> int:
    """The Hydra task: run the checks, print the table, write gradcheck.json; exit code."""
    from rich.console import Console
    from rich.progress import Progress

    from cnnlab.config import run_dir
    from cnnlab.gradcheck.report import render, verdict
    from cnnlab.gradcheck.run import Thresholds

    plan = plan or check_config(cfg)
    thresholds = Thresholds.of(cfg.gradcheck, str(cfg.trainer.precision))
    # A true precision is checked in float64, as every gradient check is.
    options = replace(BackendOptions.of(cfg.trainer, cfg.user), precision=thresholds.precision)
    out_dir = run_dir()
    batches_of = _layer_batches if plan.problem is None else _model_batches
    total, batches = batches_of(cfg, plan, thresholds, options)
    console = Console()
    records: list = []
    interrupted = False
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("checking", total=total)
        try:
            for batch in batches:
                records += batch
                if batch and not batch[0].skipped:
                    r = batch[0]
                    label = (
                        f"{r.backend}: {r.model or r.layer} {r.tensor if r.model else r.variant}"
                    )
                    progress.update(bar, advance=1, description=label)
        except KeyboardInterrupt:
            interrupted = True
    render(records, console, thresholds.precision)
    path = out_dir / "gradcheck.json"
    path.write_text(json.dumps([r.as_dict() for r in records], indent=1))
    summary = verdict(records)
    failed = any(r.passed is False for r in records)
    (log.error if failed else log.info)("%s", summary)
    log.info("records written to %s", path)
    if interrupted:
        log.warning(
            "interrupted after %d of %d steps; the records above are kept", len(records), total
        )
        return 130
    return 1 if failed else 0
