"""Run gradient checks and turn them into records.

A record is one comparison of one tensor: an analytic gradient (or a forward output) of one
backend against a reference, either centred numeric differences or torch autograd. Layer
checks and whole-model checks share the record format (``target`` tells them apart).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cnnlab.backends import DEFAULT_OPTIONS, Backend, BackendOptions
from cnnlab.compare import Comparison, compare
from cnnlab.gradcheck.numeric import numeric_gradient
from cnnlab.kernels.protocol import KernelSet
from cnnlab.ops import LayerCase, layer_cases


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria and the numeric step (the ``gradcheck`` config node)."""

    step: float
    rtol_numeric: float
    rtol_torch: float
    atol_zero: float

    def rtol(self, reference: str) -> float:
        return self.rtol_numeric if reference == "numeric" else self.rtol_torch


@dataclass
class Record:
    """One row of gradcheck.json."""

    target: str  # "layer" or "model"
    layer: str | None
    model: str | None
    variant: str
    backend: str
    tensor: str
    reference: str  # "numeric" or "torch"
    rel_error: float | None
    worst_abs_error: float | None
    worst_index: list[int] | None
    zero_gradient: bool
    threshold: float | None
    step: float | None
    passed: bool | None
    skipped: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compared(
    where: dict[str, Any], backend: str, tensor: str, reference: str, cmp: Comparison, t: Thresholds
) -> Record:
    """The record of one comparison, judged by the thresholds.

    where: ``target``, ``layer``, ``model`` and ``variant`` of the check (layer or model).
    """
    return Record(
        **where,
        backend=backend,
        tensor=tensor,
        reference=reference,
        rel_error=cmp.rel_error,
        worst_abs_error=cmp.worst_abs,
        worst_index=list(cmp.worst_index),
        zero_gradient=cmp.zero,
        threshold=t.atol_zero if cmp.zero else t.rtol(reference),
        step=t.step if reference == "numeric" else None,
        passed=cmp.passed(t.rtol(reference), t.atol_zero),
    )


def _record(
    case: LayerCase, backend: str, tensor: str, reference: str, cmp: Comparison, t: Thresholds
) -> Record:
    where = {"target": "layer", "layer": case.layer, "model": None, "variant": case.variant}
    return compared(where, backend, tensor, reference, cmp, t)


def skipped_record(
    backend: Backend, reason: str, layer: str | None = None, model: str | None = None
) -> Record:
    """A row for a backend that cannot run here (``cuda`` without a GPU)."""
    return Record(
        target="layer" if model is None else "model",
        layer=layer,
        model=model,
        variant="",
        backend=backend.name,
        tensor="",
        reference="",
        rel_error=None,
        worst_abs_error=None,
        worst_index=None,
        zero_gradient=False,
        threshold=None,
        step=None,
        passed=None,
        skipped=True,
        reason=reason,
    )


def _run_pair(case: LayerCase, kernels: KernelSet, arrays: dict, dout: Any) -> tuple[Any, tuple]:
    # Deep copies: batch norm updates its running statistics in place.
    out, cache = case.forward(kernels, copy.deepcopy(arrays))
    grads = case.backward(kernels, cache, dout)
    return np.asarray(out), tuple(grads)


def _numeric(case: LayerCase, kernels: KernelSet, arrays: dict, dout: Any, h: float) -> list:
    grads = []
    for name in case.wrt:

        def loss(value: np.ndarray, name: str = name) -> float:
            perturbed = copy.deepcopy(arrays)
            perturbed[name] = value
            out, _ = case.forward(kernels, perturbed)
            return float(np.sum(np.asarray(out) * dout))

        grads.append(numeric_gradient(loss, np.array(arrays[name], dtype=np.float64), h))
    return grads


def check_layer_case(
    case: LayerCase,
    index: int,
    seed: int,
    kernel_sets: dict[str, KernelSet],
    torch_reference: KernelSet,
    thresholds: Thresholds,
) -> list[Record]:
    """Check one case on every given kernel set; float64 throughout.

    Each backend's analytic gradients are compared with centred differences of its own
    forward, and (except torch itself) its forward output and gradients with torch autograd.
    """
    arrays = case.make(np.random.default_rng([seed, index]))
    ref_out, ref_grads = None, None
    records: list[Record] = []
    dout = None
    for name, kernels in kernel_sets.items():
        if dout is None:
            out_shape = np.asarray(case.forward(kernels, copy.deepcopy(arrays))[0]).shape
            dout = np.random.default_rng([seed, index, 1]).standard_normal(out_shape)
        out, grads = _run_pair(case, kernels, arrays, dout)
        numeric = _numeric(case, kernels, arrays, dout, thresholds.step)
        for tensor, analytic, num in zip(case.wrt, grads, numeric, strict=True):
            records.append(
                _record(case, name, tensor, "numeric", compare(analytic, num), thresholds)
            )
        if name == "torch":
            continue
        if ref_out is None:
            ref_out, ref_grads = _run_pair(case, torch_reference, arrays, dout)
        records.append(_record(case, name, "out", "torch", compare(out, ref_out), thresholds))
        for tensor, analytic, ref in zip(case.wrt, grads, ref_grads, strict=True):
            records.append(_record(case, name, tensor, "torch", compare(analytic, ref), thresholds))
    return records


def check_layers(
    cases: list[LayerCase],
    backends: Iterable[Backend],
    seed: int,
    thresholds: Thresholds,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> Iterator[list[Record]]:
    """Check every case on every backend, yielding each case's records as it completes
    (first the skipped records of backends that cannot run here), so that a caller can show
    progress and keep what is done if the run is interrupted."""
    from cnnlab.backends import BACKENDS

    kernel_sets: dict[str, KernelSet] = {}
    for backend in backends:
        ok, reason = backend.availability()
        if ok:
            kernel_sets[backend.name] = backend.kernels(options)
        else:
            layers = dict.fromkeys(c.layer for c in cases)
            yield [skipped_record(backend, reason, layer=layer) for layer in layers]
    torch_reference = BACKENDS["torch"].kernels(options)
    every = [(c.layer, c.variant) for c in layer_cases()]
    for case in cases:
        # Seeded by the case's place in the full list: the same inputs for layer=all and alone.
        index = every.index((case.layer, case.variant))
        yield check_layer_case(case, index, seed, kernel_sets, torch_reference, thresholds)
