"""``cnnlab bench <target>``: time forward, backward and forward+backward on each backend.

Targets are the options of the ``bench`` config group (``conf/bench/<target>.yaml``): their
shapes are ``bench.cases``. Every backend is first checked against torch on the same inputs
(in a mixed ``trainer.precision``, against torch in float32, within that precision's
tolerance); a backend that cannot run with the trainer's options is a skipped row. naive runs
only within ``bench.naive_budget_s`` (estimated from a small batch); ``bench model`` adds each
backend's per-layer profile and peak memory. Writes bench.json (records and provenance),
bench.csv and TensorBoard scalars to the run directory, and exits 1 if any backend's output
differs from torch's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.backends import Backend
    from cnnlab.bench.cases import BenchCase
    from cnnlab.models import Instance
    from cnnlab.schema import BenchConfig

log = logging.getLogger("cnnlab.bench")


@dataclass(frozen=True)
class Plan:
    """The backends, and the target's cases or (``bench model``) the model with its weights."""

    backends: list[Backend]
    cases: list[BenchCase]
    model: Instance | None


def check_config(cfg: BenchConfig) -> Plan:
    """Target, backends, harness settings and (for model) the model, before anything runs."""
    import numpy as np

    from cnnlab.backends import UserSource, resolve_backends
    from cnnlab.bench.cases import cases
    from cnnlab.precision import Precision

    s = cfg.bench
    backends = resolve_backends(cfg.backends, user=UserSource.of(cfg.user) is not None)
    if s.target != "model":
        return Plan(backends, cases(s), None)
    from cnnlab.models import INIT_STREAM, instantiate

    shape = tuple(int(n) for n in cfg.data.shape)
    rng = np.random.default_rng([cfg.trainer.seed, INIT_STREAM])  # as cnnlab train draws
    dtype = Precision(str(cfg.trainer.precision)).dtype
    model = instantiate(cfg.model, cfg.norm, cfg.init, shape, rng, dtype, act=cfg.act)
    return Plan(backends, [], model)


def _threads(requested: int | None) -> int | None:
    """The thread count the rows record: the one asked for, else BLAS's own."""
    if requested is not None:
        return int(requested)
    from threadpoolctl import threadpool_info

    pools = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return pools[0] if pools else None


def task(cfg: BenchConfig, plan: Plan | None = None) -> int:
    """The Hydra task: measure every case on every backend, report, write the files."""
    from cnnlab.backends import BackendOptions
    from cnnlab.bench import report
    from cnnlab.bench.run import Context, bench_case, compare
    from cnnlab.bench.timing import matmul_gflops
    from cnnlab.config import run_dir
    from cnnlab.precision import Precision
    from cnnlab.provenance import provenance
    from cnnlab.runtime import use_threads

    plan = plan or check_config(cfg)
    options = BackendOptions.of(cfg.trainer, cfg.user)
    # Before the roofline, which is measured at the thread count the kernels will run with.
    use_threads(options.threads)
    s = cfg.bench
    precision = Precision(options.precision)
    dtype = precision.dtype
    backends = plan.backends
    roofline = matmul_gflops(int(s.roofline_size), dtype)
    log.info("roofline: numpy a @ b (%d²) at %.1f GFLOP/s", s.roofline_size, roofline)
    threads = _threads(cfg.trainer.threads)
    ctx = Context(s.target, dtype, threads, int(cfg.trainer.seed), s, roofline, options)
    rows: list[dict[str, Any]] = []
    if plan.model is not None:
        from cnnlab.bench.model import ModelBench, bench_model

        mb = ModelBench(cfg, plan.model, options)
        for backend in backends:
            rows.append(bench_model(ctx, mb, backend))
            log.info("%s on %s: %s", mb.cfg.model.name, backend.name, rows[-1]["status"])
    else:
        for case in plan.cases:
            for backend in backends:
                rows.append(bench_case(ctx, case, backend))
                name = f"{case.name} {case.variant}".strip()
                log.info("%s on %s: %s", name, backend.name, rows[-1]["status"])
    compare(rows)
    title = f"cnnlab bench {s.target}, {precision}"
    report.print_table(title, rows, roofline)
    report.print_layers(rows)
    _log_staged_over_fused(rows)
    out_dir = run_dir()
    meta = {
        "target": s.target,
        "conventions": "seconds per call, median of bench.runs after bench.warmup; FLOPs: "
        "multiply-add = 2, backward = 2x forward, gflops over fwdbwd_s; roofline_frac: gflops "
        "over numpy a @ b; layers: medians of bench.profile_steps profiled steps, share of "
        "their sum; peak_mem_bytes: a step's peak above the model and batch (CPU: RSS of a "
        "child process; CUDA: allocated)",
        "roofline_gflops": roofline,
        "precision": precision.value,
        "dtype": str(dtype),
        "tolerance": ctx.tolerance()[0],
        "winograd": bool(cfg.trainer.winograd),
        "channels_last": options.channels_last,
        "compile": options.compile,
        "rng": options.rng,
        "provenance": provenance(cfg.trainer.threads, _device(backends)),
    }
    report.write_json(out_dir / "bench.json", rows, meta)
    report.write_csv(out_dir / "bench.csv", rows)
    report.write_tensorboard(out_dir, f"{title} (roofline {roofline:.1f} GFLOP/s)", rows)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _device(backends: list[Backend]) -> str:
    usable = [b for b in backends if b.device == "cuda" and b.availability()[0]]
    return "cuda" if usable else "cpu"


def _log_staged_over_fused(rows: list[dict[str, Any]]) -> None:
    """Batch norm: how much slower the staged backward is than the fused one, per backend."""
    bwd = {(r["case"], r["variant"], r["backend"]): r["bwd_s"] for r in rows}
    for (case, variant, backend), staged in bwd.items():
        fused = bwd.get((case, "fused", backend))
        if variant == "staged" and staged and fused:
            log.info("%s on %s: staged/fused backward = %.2f", case, backend, staged / fused)
