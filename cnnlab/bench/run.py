"""One measurement per (case, backend): check against torch, estimate naive, then time.

Conventions (stated in the README and bench.json): times are seconds per call, the median of
``bench.runs`` timed runs after ``bench.warmup`` warm-up runs (the median of the repeats'
medians with ``bench.repeats``); conv and linear FLOPs count a multiply-add as 2, the backward
as twice the forward, so fwd+bwd is 3x the forward and GFLOP/s is that over ``fwdbwd_s``.
Kernels take and return numpy arrays, so torch and cuda times include the copies in and out.

In a mixed ``trainer.precision`` the torch backends run each layer under autocast and are
checked against torch in float32 within that precision's tolerance
(:data:`cnnlab.precision.TOLERANCE`), not ``bench.rtol``; a backend that cannot run with the
options (numpy under autocast, float16 on the CPU) is a skipped row that says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.backends import DEFAULT_OPTIONS, Backend, BackendOptions
from cnnlab.bench.cases import BenchCase, Built
from cnnlab.bench.timing import measure, once
from cnnlab.compare import rel_error
from cnnlab.errors import KernelMissingError, UserCodeError
from cnnlab.kernels.protocol import KernelSet
from cnnlab.precision import Precision

if TYPE_CHECKING:
    from cnnlab.schema import BenchSettings

log = logging.getLogger("cnnlab.bench")

# Calls of fwd+bwd size one measurement makes per timed run: fwd, bwd and fwd+bwd together.
_CALLS_PER_RUN = 2


@dataclass
class Context:
    """What every measurement of a run shares."""

    target: str
    dtype: np.dtype
    threads: int | None
    seed: int
    settings: BenchSettings
    roofline_gflops: float
    options: BackendOptions = DEFAULT_OPTIONS
    _refs: dict[tuple[str, str, int], tuple[Any, list[Any]]] = field(default_factory=dict)
    _kernels: dict[str, KernelSet] = field(default_factory=dict)

    @property
    def precision(self) -> Precision:
        return Precision(self.options.precision)

    def tolerance(self) -> tuple[float, str]:
        """The relative error accepted against torch, and the words a failed row's reason
        gives it: ``bench.rtol``, or a mixed precision's own tolerance (16-bit layers cannot
        meet a float32 one)."""
        p = self.precision
        if p.mixed:
            return p.tolerance, f"{p.tolerance:g}, the tolerance of trainer.precision={p}"
        return float(self.settings.rtol), f"bench.rtol={self.settings.rtol:g}"

    def kernels(self, backend: Backend) -> KernelSet:
        """The backend's kernel set, made once per run (a user's layers: one worker process,
        reused by every case)."""
        if backend.name not in self._kernels:
            self._kernels[backend.name] = backend.kernels(self.options)
        return self._kernels[backend.name]

    def reference_kernels(self) -> KernelSet:
        """torch on the CPU in the true precision of the run's dtype: the reference every
        row is checked against (the torch row's own kernel set where that is the run's)."""
        from cnnlab.backends import get_backend

        torch_cpu = get_backend("torch")
        if not self.precision.mixed:
            return self.kernels(torch_cpu)
        if "reference" not in self._kernels:
            true = replace(self.options, precision=self.precision.reference.value)
            self._kernels["reference"] = torch_cpu.kernels(true)
        return self._kernels["reference"]

    def budget_calls(self) -> int:
        """fwd+bwd-sized calls naive would make: the check, then warm-up and timed runs."""
        s = self.settings
        return 1 + _CALLS_PER_RUN * (s.warmup + s.runs) * max(s.repeats, 1)


def record(ctx: Context, case: str, variant: str, backend: str, **values: Any) -> dict[str, Any]:
    """One row of bench.json, with every field present (None where it does not apply)."""
    row: dict[str, Any] = {
        "target": ctx.target,
        "case": case,
        "variant": variant,
        "backend": backend,
        "dtype": str(ctx.dtype),
        "precision": ctx.options.precision,
        "channels_last": ctx.options.channels_last,
        "compile": ctx.options.compile,
        "threads": ctx.threads,
        "batch": None,
        "status": "ok",
        "skipped": False,
        "reason": "",
        "fwd_s": None,
        "bwd_s": None,
        "fwdbwd_s": None,
        "fwdbwd_min_s": None,
        "fwdbwd_max_s": None,
        "flops": None,
        "gflops": None,
        "roofline_frac": None,
        "speedup_vs_naive": None,
        "ratio_to_torch": None,
        "images_per_s": None,
        "naive_estimate_s": None,
        "max_rel_error": None,
        "peak_mem_bytes": None,
        "layers": None,
    }
    row.update(values)
    return row


def _pair(
    kernels: KernelSet, built: Built, arrays: dict, dout: Any = None
) -> tuple[Any, list, Any]:
    out, cache = built.forward(kernels, arrays)
    if dout is None:
        return out, [], cache
    return out, list(built.backward(kernels, cache, dout)), cache


def _arrays(ctx: Context, built: Built) -> dict[str, Any]:
    # The same seed for every backend: each gets identical inputs, freshly drawn (batch norm
    # changes its running statistics in place).
    return built.make(np.random.default_rng(ctx.seed))


def _reference(ctx: Context, case: BenchCase, batch: int) -> tuple[Any, list[Any], Any]:
    """torch's (CPU, true precision) output and gradients for the case at ``batch``, and the
    upstream dout."""
    key = (case.name, case.variant, batch)
    if key not in ctx._refs:
        torch_kernels = ctx.reference_kernels()
        built = case.build(batch, ctx.dtype)
        out, _, _ = _pair(torch_kernels, built, _arrays(ctx, built))
        dout = np.random.default_rng(ctx.seed + 1).standard_normal(np.shape(out))
        dout = np.asarray(dout, dtype=ctx.dtype)
        out, grads, _ = _pair(torch_kernels, built, _arrays(ctx, built), dout)
        ctx._refs[key] = (out, grads, dout)
    return ctx._refs[key]


def _check(ctx: Context, case: BenchCase, kernels: KernelSet, batch: int) -> float:
    """The largest relative error of the forward output and every gradient against torch."""
    ref_out, ref_grads, dout = _reference(ctx, case, batch)
    built = case.build(batch, ctx.dtype)
    out, grads, _ = _pair(kernels, built, _arrays(ctx, built), dout)
    errors = [rel_error(out, ref_out)]
    errors += [rel_error(g, r) for g, r in zip(grads, ref_grads, strict=True) if r is not None]
    return max(errors)


def bench_case(ctx: Context, case: BenchCase, backend: Backend) -> dict[str, Any]:
    """Check, then time one case on one backend (or say why it is skipped or failed)."""
    row = dict(case=case.name, variant=case.variant, backend=backend.name, batch=case.batch)
    reason = ctx.options.unusable(backend)
    if reason is not None:
        return record(ctx, **row, status="skipped", skipped=True, reason=reason)
    kernels = ctx.kernels(backend)
    try:
        return _bench_on(ctx, case, backend, kernels, row)
    except KernelMissingError as exc:  # a user's file without the layer, or these arguments
        return record(ctx, **row, status="skipped", skipped=True, reason=str(exc))
    except UserCodeError as exc:
        log.error("%s/%s on %s: %s", case.name, case.variant or "-", backend.name, exc)
        return record(ctx, **row, status="failed", reason=str(exc))


# Backends timed only within bench.naive_budget_s, estimated from a probe: loops (naive, and
# a user's layers, which are as often loops) may take hours at a suite's sizes.
_ESTIMATED = ("naive", "user")


def _bench_on(
    ctx: Context, case: BenchCase, backend: Backend, kernels: KernelSet, row: dict[str, Any]
) -> dict[str, Any]:
    s = ctx.settings
    flops = case.flops(case.batch)
    if backend.name in _ESTIMATED:
        probe = max(1, min(int(s.naive_probe_batch), case.batch))
        built = case.build(probe, ctx.dtype)
        _, _, dout = _reference(ctx, case, probe)
        arrays = _arrays(ctx, built)
        per_call = once(lambda: _pair(kernels, built, arrays, dout)) * case.batch / probe
        total = per_call * ctx.budget_calls()
        row["naive_estimate_s"] = per_call
        if total > s.naive_budget_s:
            error = _check(ctx, case, kernels, probe)
            if error > ctx.tolerance()[0]:
                return failed(ctx, row, error, f"at batch {probe}")
            return record(
                ctx,
                **row,
                status="skipped",
                skipped=True,
                max_rel_error=error,
                reason=f"estimated {total:.3g} s > bench.naive_budget_s={s.naive_budget_s:g}",
            )
    error = _check(ctx, case, kernels, case.batch)
    if error > ctx.tolerance()[0]:
        return failed(ctx, row, error, "")
    built = case.build(case.batch, ctx.dtype)
    arrays = _arrays(ctx, built)
    _, _, dout = _reference(ctx, case, case.batch)
    _, _, cache = _pair(kernels, built, arrays)
    # A user's layers are timed in their worker, by the seconds their functions ran there.
    timing = (s.warmup, s.runs, s.repeats, backend.device, getattr(kernels, "busy_seconds", None))
    fwd = measure(lambda: built.forward(kernels, arrays), *timing)
    bwd = measure(lambda: built.backward(kernels, cache, dout), *timing)
    both = measure(lambda: _pair(kernels, built, arrays, dout), *timing)
    gflops = 3 * flops / both.median / 1e9 if flops else None
    return record(
        ctx,
        **row,
        fwd_s=fwd.median,
        bwd_s=bwd.median,
        fwdbwd_s=both.median,
        fwdbwd_min_s=both.low,
        fwdbwd_max_s=both.high,
        flops=3 * flops if flops else None,
        gflops=gflops,
        roofline_frac=gflops / ctx.roofline_gflops if gflops else None,
        max_rel_error=error,
    )


def failed(ctx: Context, row: dict, error: float, where: str) -> dict[str, Any]:
    """A failed row: the output differs from torch's beyond the tolerance (logged too)."""
    reason = f"differs from torch: relative error {error:.2e} > {ctx.tolerance()[1]}"
    log.error("%s/%s on %s %s", row["case"], row["variant"] or "-", row["backend"], reason)
    return record(
        ctx, **row, status="failed", max_rel_error=error, reason=f"{reason} {where}".strip()
    )


def compare(rows: list[dict[str, Any]]) -> None:
    """Fill speed-up over naive and ratio to torch within each (case, variant); naive's
    estimate stands in for its time where it was skipped for the budget."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["variant"]), []).append(r)
    for group in groups.values():
        by = {r["backend"]: r for r in group}
        naive = by.get("naive")
        naive_s = naive and (naive["fwdbwd_s"] or naive["naive_estimate_s"])
        torch_s = by.get("torch", {}).get("fwdbwd_s")
        for r in group:
            if r["fwdbwd_s"]:
                r["speedup_vs_naive"] = naive_s / r["fwdbwd_s"] if naive_s else None
                r["ratio_to_torch"] = r["fwdbwd_s"] / torch_s if torch_s else None
