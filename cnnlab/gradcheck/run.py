"""Run gradient checks and turn them into records.

A record is one comparison of one tensor: an analytic gradient (or a forward output) of one
backend against a reference, either centred numeric differences or torch autograd. Layer
checks and whole-model checks share the record format (``target`` tells them apart).

Against torch the gate is a fixed relative error (``rtol_torch``): two analytic gradients
differ by rounding only. Against numeric differences it is set by the differences' own
estimated error (:meth:`Thresholds.numeric_rtol`), which grows with the width of a layer.

Checks run in float64, whatever ``trainer.precision`` stores a run in. In a mixed precision
they check what autocast does instead: the torch backends run each case on float32 arrays
under autocast and are compared with torch in float64, within that precision's tolerance
(:meth:`Thresholds.torch_rtol`); numeric differences of a 16-bit forward would measure only its
rounding, so there are none, and the numpy backends (which have no autocast) are skipped.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.backends import DEFAULT_OPTIONS, Backend, BackendOptions
from cnnlab.compare import Comparison, compare
from cnnlab.errors import KernelMissingError, UserCodeError
from cnnlab.gradcheck.numeric import NumericReference, numeric_reference
from cnnlab.kernels.protocol import KernelSet
from cnnlab.ops import LayerCase, kinds, layer_cases
from cnnlab.precision import Precision

if TYPE_CHECKING:
    from cnnlab.schema import GradcheckSettings


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria and how numeric references are taken (the ``gradcheck`` config node).

    Attributes:
        step: h of the centred differences; their error is estimated against 2h.
        rtol_floor, error_factor, rtol_numeric: the numeric gate, see :meth:`numeric_rtol`.
        elementwise_max: a layer case whose checked tensors hold more elements than this in
            all is differenced along ``directions`` random directions, not element by element.
        rtol_torch: the relative error accepted against torch autograd.
        atol_zero: the absolute error accepted where the true gradient is zero.
        precision: the ``trainer.precision`` checked: ``64-true`` (float64, every backend),
            or a mixed one (torch under autocast, see :meth:`torch_rtol`).
    """

    step: float
    rtol_floor: float
    error_factor: float
    rtol_numeric: float
    elementwise_max: int
    directions: int
    rtol_torch: float
    atol_zero: float
    precision: str = "64-true"

    @classmethod
    def of(cls, settings: GradcheckSettings, precision: str = "64-true") -> Thresholds:
        """The thresholds of a ``gradcheck`` config node (its keys have the same names) for
        checks in ``precision``: a true one is checked in float64."""
        names = [f.name for f in fields(cls) if f.name != "precision"]
        checked = Precision(precision)
        checked = checked if checked.mixed else Precision("64-true")
        return cls(**{n: getattr(settings, n) for n in names}, precision=checked.value)

    @property
    def mixed(self) -> bool:
        return Precision(self.precision).mixed

    def torch_rtol(self) -> float:
        """The relative error accepted against torch autograd in float64: ``rtol_torch``, or
        in a mixed precision its tolerance (:data:`cnnlab.precision.TOLERANCE`), since 16-bit
        layers round at about 1e-3."""
        return Precision(self.precision).tolerance if self.mixed else self.rtol_torch

    def torch_atol_zero(self) -> float:
        """The absolute error accepted against torch where the true gradient is zero:
        ``atol_zero``, or a mixed precision's tolerance (inputs are of order 1)."""
        return Precision(self.precision).tolerance if self.mixed else self.atol_zero

    def numeric_rtol(self, estimated: float) -> float:
        """The relative error accepted against a numeric reference whose own error is
        estimated at ``estimated`` (relative, as the error it is compared with):
        ``min(rtol_numeric, rtol_floor + error_factor * estimated)``.

        The factor covers the chance that D(h) and D(2h) agree closely by luck; the floor
        covers the analytic gradient's own rounding and tensors of one or two elements, whose
        estimate is a single draw; the cap keeps a reference that is no reference (a step
        across a kink, where D(h) and D(2h) disagree wildly) from excusing any error.
        """
        return min(self.rtol_numeric, self.rtol_floor + self.error_factor * estimated)


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
    threshold: float | None  # the relative error accepted (atol_zero for a zero gradient)
    step: float | None
    passed: bool | None
    skipped: bool = False
    reason: str = ""
    # Numeric references: the differences' estimated relative error, and how they were taken
    # ("elements", "8 directions", "4 sampled").
    fd_error: float | None = None
    method: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _judged(
    where: dict[str, Any],
    backend: str,
    tensor: str,
    reference: str,
    cmp: Comparison,
    rtol: float,
    atol_zero: float,
    *,
    step: float | None = None,
    fd_error: float | None = None,
    method: str = "",
) -> Record:
    return Record(
        **where,
        backend=backend,
        tensor=tensor,
        reference=reference,
        rel_error=cmp.rel_error,
        worst_abs_error=cmp.worst_abs,
        worst_index=list(cmp.worst_index),
        zero_gradient=cmp.zero,
        threshold=atol_zero if cmp.zero else rtol,
        step=step,
        passed=cmp.passed(rtol, atol_zero),
        fd_error=fd_error,
        method=method,
    )


def compared_torch(
    where: dict[str, Any], backend: str, tensor: str, cmp: Comparison, t: Thresholds
) -> Record:
    """The record of one comparison with torch autograd, judged by
    :meth:`Thresholds.torch_rtol` (``rtol_torch`` in float64).

    where: ``target``, ``layer``, ``model`` and ``variant`` of the check (layer or model).
    """
    return _judged(where, backend, tensor, "torch", cmp, t.torch_rtol(), t.torch_atol_zero())


def compared_numeric(
    where: dict[str, Any], backend: str, tensor: str, ref: NumericReference, t: Thresholds
) -> Record:
    """The record of an analytic gradient against its numeric reference, judged by a
    tolerance set from the reference's estimated error (:meth:`Thresholds.numeric_rtol`),
    never below its resolution.

    A gradient the reference cannot resolve (both norms within ``error_factor`` times its
    resolution: a true zero, such as a norm's beta whose shift the next norm removes) is a
    zero gradient, judged by its absolute error against that much.
    """
    floor = t.error_factor * ref.resolution
    cmp = compare(ref.analytic, ref.numeric, zero_norm=max(1e-10, floor))
    # The denominator of the relative error (cnnlab.compare), so that both are on one scale.
    scale = max(float(np.linalg.norm(ref.analytic) + np.linalg.norm(ref.numeric)), 1e-12)
    fd_error = max(ref.error, ref.resolution) / scale
    rtol = t.numeric_rtol(fd_error)
    return _judged(
        where,
        backend,
        tensor,
        "numeric",
        cmp,
        rtol,
        max(t.atol_zero, floor),
        step=t.step,
        fd_error=fd_error,
        method=ref.method,
    )


def skipped_record(
    backend: Backend, reason: str, layer: str | None = None, model: str | None = None
) -> Record:
    """A row for a backend that cannot run here (``cuda`` without a GPU) or with the
    options (a numpy backend under a mixed precision)."""
    where = {"target": "layer" if model is None else "model", "layer": layer, "model": model}
    return unjudged({**where, "variant": ""}, backend.name, None, reason)


def unjudged(where: dict[str, Any], backend: str, passed: bool | None, reason: str) -> Record:
    """A row without a comparison: skipped (``passed`` None: the backend cannot run this
    case, e.g. a user's file without the layer) or failed (False: its code raised, hung or
    took its worker down), with the reason."""
    return Record(
        **where,
        backend=backend,
        tensor="",
        reference="",
        rel_error=None,
        worst_abs_error=None,
        worst_index=None,
        zero_gradient=False,
        threshold=None,
        step=None,
        passed=passed,
        skipped=passed is None,
        reason=reason,
    )


def _run_pair(case: LayerCase, kernels: KernelSet, arrays: dict, dout: Any) -> tuple[Any, tuple]:
    # Deep copies: batch norm updates its running statistics in place.
    out, cache = case.forward(kernels, copy.deepcopy(arrays))
    grads = case.backward(kernels, cache, dout)
    return np.asarray(out), tuple(grads)


def _numeric(
    case: LayerCase,
    kernels: KernelSet,
    arrays: dict,
    dout: Any,
    grads: tuple,
    t: Thresholds,
    seed: list[int],
) -> list[NumericReference]:
    """The numeric reference of each gradient, of the loss ``<out, dout>``.

    seed: draws each tensor's directions (the same on every backend) when the case is wide.
    """
    # One evaluation costs more the wider the layer, so a wide case is differenced along
    # directions in all its tensors, even a bias of a few hundred elements.
    wide = sum(np.size(arrays[name]) for name in case.wrt) > t.elementwise_max
    refs = []
    for position, (name, grad) in enumerate(zip(case.wrt, grads, strict=True)):

        def loss(value: np.ndarray, name: str = name) -> float:
            perturbed = copy.deepcopy(arrays)
            perturbed[name] = value
            out, _ = case.forward(kernels, perturbed)
            return float(np.sum(np.asarray(out) * dout))

        directions = None
        if wide:
            rng = np.random.default_rng([*seed, position])
            directions = rng.standard_normal((t.directions, *np.shape(arrays[name])))
        refs.append(numeric_reference(loss, arrays[name], grad, t.step, directions))
    return refs


def check_layer_case(
    case: LayerCase,
    index: int,
    seed: int,
    kernel_sets: dict[str, KernelSet],
    torch_reference: KernelSet,
    thresholds: Thresholds,
) -> list[Record]:
    """Check one case on every given kernel set; float64 throughout, unless the thresholds'
    precision is mixed (:func:`_check_mixed`).

    Each backend's analytic gradients are compared with centred differences of its own
    forward (element by element, or along random directions for a case with more than
    ``thresholds.elementwise_max`` elements), and (except torch itself) its forward output
    and gradients with torch autograd.
    """
    arrays = case.make(np.random.default_rng([seed, index]))
    records: list[Record] = []
    where = {"target": "layer", "layer": case.layer, "model": None, "variant": case.variant}
    out_shape = np.asarray(case.forward(torch_reference, copy.deepcopy(arrays))[0]).shape
    dout = np.random.default_rng([seed, index, 1]).standard_normal(out_shape)
    ref_out, ref_grads = _run_pair(case, torch_reference, arrays, dout)
    if thresholds.mixed:
        return _check_mixed(
            case, where, arrays, dout, (ref_out, ref_grads), kernel_sets, thresholds
        )
    kernel = kinds()[case.layer].kernel
    for name, kernels in kernel_sets.items():
        # A kernel set that is not all of cnnlab's own (a user's file) may lack a layer.
        skips = getattr(kernels, "skips", None)
        reason = skips(kernel) if skips is not None and kernel is not None else None
        if reason:
            records.append(unjudged(where, name, None, reason))
            continue
        try:
            out, grads = _run_pair(case, kernels, arrays, dout)
            numeric = _numeric(case, kernels, arrays, dout, grads, thresholds, [seed, index, 2])
        except KernelMissingError as exc:  # arguments the user's convention cannot express
            records.append(unjudged(where, name, None, str(exc)))
            continue
        except UserCodeError as exc:  # the user's code raised, hung or died: a failed row
            records.append(unjudged(where, name, False, str(exc)))
            continue
        for tensor, ref in zip(case.wrt, numeric, strict=True):
            records.append(compared_numeric(where, name, tensor, ref, thresholds))
        if name == "torch":
            continue
        if kernel in getattr(kernels, "own_randomness", ()):
            # Its own random draws (a user's dropout mask): torch's would differ.
            reason = "draws its own mask: its rule is checked, not torch's numbers"
            records.append(unjudged(where, name, None, reason))
            continue
        records.append(compared_torch(where, name, "out", compare(out, ref_out), thresholds))
        for tensor, analytic, ref in zip(case.wrt, grads, ref_grads, strict=True):
            records.append(compared_torch(where, name, tensor, compare(analytic, ref), thresholds))
    return records


def _check_mixed(
    case: LayerCase,
    where: dict[str, Any],
    arrays: dict,
    dout: np.ndarray,
    reference: tuple[Any, tuple],
    kernel_sets: dict[str, KernelSet],
    t: Thresholds,
) -> list[Record]:
    """One case on torch kernel sets under autocast: the case's arrays in the precision's
    storage dtype (autocast leaves float64 alone), its output and gradients against torch's
    in float64 (``reference``: ``(out, grads)``)."""
    dtype = Precision(t.precision).dtype
    stored = {
        k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v
        for k, v in arrays.items()
    }
    ref_out, ref_grads = reference
    records = []
    for name, kernels in kernel_sets.items():
        out, grads = _run_pair(case, kernels, stored, dout.astype(dtype))
        records.append(compared_torch(where, name, "out", compare(out, ref_out), t))
        for tensor, analytic, ref in zip(case.wrt, grads, ref_grads, strict=True):
            records.append(compared_torch(where, name, tensor, compare(analytic, ref), t))
    return records


def check_layers(
    cases: list[LayerCase],
    backends: Iterable[Backend],
    seed: int,
    thresholds: Thresholds,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> Iterator[list[Record]]:
    """Check every case on every backend, yielding each case's records as it completes
    (first the skipped records of backends that cannot run here or with ``options``), so that
    a caller can show progress and keep what is done if the run is interrupted."""
    from cnnlab.backends import BACKENDS

    kernel_sets: dict[str, KernelSet] = {}
    for backend in backends:
        reason = options.unusable(backend)
        if reason is None:
            kernel_sets[backend.name] = backend.kernels(options)
        else:
            layers = dict.fromkeys(c.layer for c in cases)
            yield [skipped_record(backend, reason, layer=layer) for layer in layers]
    # torch in float64 without autocast: the reference of every precision.
    torch_reference = BACKENDS["torch"].kernels(replace(options, precision="64-true"))
    every = [(c.layer, c.variant) for c in layer_cases()]
    for case in cases:
        # Seeded by the case's place in the full list: the same inputs for layer=all and alone.
        index = every.index((case.layer, case.variant))
        yield check_layer_case(case, index, seed, kernel_sets, torch_reference, thresholds)
