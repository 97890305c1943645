"""The torch kernel set: the numpy pair contract of :mod:`cnnlab.kernels`, computed by PyTorch.

:class:`TorchKernels` takes and returns numpy arrays with exactly the names and signatures of
the numpy backends (``conv2d_forward(x, w, b, stride=1, pad=0) -> (out, cache)``,
``conv2d_backward(dout, cache, need_dx=True) -> (dx, dw, db)``, ...). Every pair is made by one
adapter, :func:`_pair`, from an op of :mod:`cnnlab.kernels.torch.ops`: the forward runs the op on
tensors that require grad and keeps the graph in the cache; the backward asks autograd for the
gradients.
The pairs are made for every op marked :func:`~cnnlab.kernels.torch.ops.paired`, so a new layer
kind needs only its op.
``TorchKernels("cpu")`` is the ``torch`` backend, ``TorchKernels("cuda")`` the ``cuda`` one;
``TorchKernels("cpu", "bf16-mixed")`` runs each forward under ``torch.autocast`` (a mixed
``trainer.precision``), its backward following the autocast graph.

This package imports torch, so it is imported only when a torch backend is selected.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnlab.errors import ArgumentError, BackendUnavailableError
from cnnlab.kernels.choices import BatchNormBackward
from cnnlab.kernels.common.loss import check_loss_inputs
from cnnlab.kernels.contract import check_arrays, check_dout
from cnnlab.kernels.torch import ops
from cnnlab.precision import Precision

__all__ = ["TorchKernels", "cuda_available", "ops"]


def cuda_available() -> tuple[bool, str]:
    """Whether PyTorch can use a CUDA GPU here; the reason string is empty when it can."""
    # ROCm builds drive AMD GPUs through the same "cuda" device type.
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return False, f"this PyTorch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible (no device, no driver, or CUDA_VISIBLE_DEVICES empty)"
    return True, ""


@dataclass(frozen=True)
class TorchCache:
    """What a forward keeps for its backward.

    out: the op's output tensor, still attached to its autograd graph;
    inputs: the differentiable input tensors in the op's argument order, None for an absent one
    (a conv or linear without bias).
    """

    out: torch.Tensor
    inputs: tuple[torch.Tensor | None, ...]


# Autocast's 16-bit results: numpy has no bfloat16, and the kernel contract's arrays are
# float32 or float64, so they come back as float32 (the storage dtype of the mixed precisions).
_HALF = (torch.bfloat16, torch.float16)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    # Always a copy: on CPU .numpy() would alias a tensor that autograd saved for the backward.
    t = t.detach()
    return (t.float() if t.dtype in _HALF else t).to("cpu", copy=True).numpy()


def _pair(
    op: Callable[..., torch.Tensor],
    grads: tuple[str, ...],
    updates: tuple[str, ...] = (),
    optional_dx: bool = False,
) -> tuple[Callable[..., tuple[np.ndarray, TorchCache]], Callable[..., Any]]:
    """Wrap a tensor op into a numpy ``(forward, backward)`` method pair.

    op: a function of :mod:`ops`; the forward method has its signature (plus ``self``).
    grads: names of the op's arguments that get gradients, in the order backward returns them;
    backward returns a single array when there is one name, else a tuple (None for an argument
    that was None).
    updates: names of array arguments the op changes in place (batch norm's running
    statistics); their values are copied back into the caller's numpy arrays after the forward.
    optional_dx: the backward takes ``need_dx=True``; False skips the first gradient (None).
    A ``*xs`` argument (a concatenation's) holds any number of arrays, named ``xs[i]`` in
    errors; it gets one gradient per array, and the backward always returns a tuple.
    """
    sig = inspect.signature(op)
    name = op.__name__
    star = next((p.name for p in sig.parameters.values() if p.kind is p.VAR_POSITIONAL), None)

    def forward(self: TorchKernels, *args: Any, **kwargs: Any) -> tuple[np.ndarray, TorchCache]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        arrays = {k: v for k, v in bound.arguments.items() if isinstance(v, np.ndarray)}
        many = bound.arguments[star] if star is not None else ()
        spread = {f"{star}[{i}]": v for i, v in enumerate(many)}
        check_arrays(name, [*arrays.items(), *spread.items()])
        for k, v in arrays.items():
            bound.arguments[k] = self.to_tensor(v, requires_grad=k in grads)
        if star is not None:
            bound.arguments[star] = tuple(
                self.to_tensor(np.asarray(v), requires_grad=star in grads) for v in spread.values()
            )
        # The caller may be inside torch.no_grad(); the cache needs the graph regardless.
        with torch.enable_grad(), self.autocast():
            out = op(*bound.args, **bound.kwargs)
        for k in updates:
            arrays[k][...] = _to_numpy(bound.arguments[k])
        inputs = [bound.arguments[k] if k == star else (bound.arguments[k],) for k in grads]
        cache = TorchCache(out, tuple(t for ts in inputs for t in ts))
        return _to_numpy(out), cache

    def grads_of(dout: np.ndarray, cache: TorchCache, need_dx: bool) -> Any:
        out = cache.out
        dout = np.asarray(dout)
        check_dout(name, dout, tuple(out.shape))
        dout_t = torch.as_tensor(dout, dtype=out.dtype, device=out.device)
        inputs = cache.inputs if need_dx else (None, *cache.inputs[1:])
        present = [t for t in inputs if t is not None]
        # retain_graph: like a numpy cache, a torch cache may be used for more than one backward.
        found = iter(
            torch.autograd.grad(
                out, present, dout_t, retain_graph=True, allow_unused=True, materialize_grads=True
            )
        )
        result = tuple(None if t is None else _to_numpy(next(found)) for t in inputs)
        return result[0] if len(result) == 1 and star is None else result

    def backward_or_skip_dx(
        self: TorchKernels, dout: np.ndarray, cache: TorchCache, need_dx: bool = True
    ) -> Any:
        return grads_of(dout, cache, need_dx)

    def backward_all(self: TorchKernels, dout: np.ndarray, cache: TorchCache) -> Any:
        return grads_of(dout, cache, True)

    backward = backward_or_skip_dx if optional_dx else backward_all

    # The forward shows the op's own parameters, with numpy arrays where the op takes tensors.
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [
        p.replace(annotation=str(p.annotation).replace("Tensor", "np.ndarray"))
        for p in sig.parameters.values()
    ]
    forward.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation="tuple[np.ndarray, TorchCache]"
    )
    forward.__name__ = f"{name}_forward"
    forward.__qualname__ = f"TorchKernels.{name}_forward"
    plain = sig.replace(
        parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
        return_annotation=sig.empty,
    )
    forward.__doc__ = (
        f"``{name}_forward{plain} -> (out, cache)`` on numpy arrays: runs "
        f":func:`cnnlab.kernels.torch.ops.{name}` on the device (shapes in its docstring)."
    )
    backward.__name__ = f"{name}_backward"
    backward.__qualname__ = f"TorchKernels.{name}_backward"
    grad_names = ", ".join(f"d{g}[0], d{g}[1], ..." if g == star else f"d{g}" for g in grads)
    grad_names = grad_names if len(grads) == 1 and star is None else f"({grad_names})"
    args = "dout, cache, need_dx=True" if optional_dx else "dout, cache"
    backward.__doc__ = (
        f"``{name}_backward({args}) -> {grad_names}`` by autograd; dout: out's shape."
    )
    return forward, backward


class TorchKernels:
    """The kernel contract (:class:`~cnnlab.kernels.protocol.KernelSet`) on numpy arrays,
    computed by PyTorch on ``device``. Its pairs are made when this module loads, one per op
    marked :func:`~cnnlab.kernels.torch.ops.paired`: a type checker cannot see them, so the
    tests check each one against the protocol.

    Arrays keep their dtype (float32 stays float32). Forward copies its inputs to the device, so
    changing an input array after the call does not change the cached graph; outputs and
    gradients are fresh numpy arrays. Batch norm's running statistics are updated in the
    caller's arrays, as on the numpy backends.

    device: ``"cpu"`` (the ``torch`` backend) or ``"cuda"`` / ``"cuda:<index>"`` (``cuda``);
    a CUDA device that is not there raises BackendUnavailableError (no fallback to the CPU).
    precision: a :class:`~cnnlab.precision.Precision` name. The mixed ones run every forward
    under ``torch.autocast`` in their 16-bit type (convs and matrix products in it, the rest
    as autocast decides), on float32 arrays; outputs come back as float32 and gradients in
    their inputs' dtype. ``16-mixed`` is CUDA's only (an ArgumentError on the CPU). The true
    precisions change nothing: arrays keep their dtype.
    """

    def __init__(self, device: str = "cpu", precision: str = "32-true") -> None:
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ArgumentError(f"unknown torch device {device!r} (use 'cpu' or 'cuda')") from e
        if dev.type == "cuda":
            ok, reason = cuda_available()
            if not ok:
                raise BackendUnavailableError(f"backend cuda is unavailable: {reason}")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise BackendUnavailableError(
                    f"backend cuda is unavailable: no GPU {dev.index} "
                    f"({torch.cuda.device_count()} visible)"
                )
        elif dev.type != "cpu":
            raise ArgumentError(f"unsupported torch device {device!r} (use 'cpu' or 'cuda')")
        try:
            self.precision = Precision(precision)
        except ValueError as e:
            raise ArgumentError(str(e)) from None
        why = self.precision.unsupported("torch", dev.type)
        if why is not None:
            raise ArgumentError(why)
        self.device = dev

    def __repr__(self) -> str:
        precision = "" if self.precision == "32-true" else f", precision={self.precision.value!r}"
        return f"TorchKernels(device={str(self.device)!r}{precision})"

    def autocast(self) -> contextlib.AbstractContextManager:
        """torch's autocast in a mixed precision, else a context that does nothing."""
        half = self.precision.autocast_dtype()
        if half is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=half)

    def to_tensor(self, a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
        """A copy of a on this device with the same dtype (torch cannot wrap negative strides)."""
        a = np.ascontiguousarray(a)
        return torch.tensor(a, device=self.device, requires_grad=requires_grad)

    _softmax_ce_forward, _softmax_ce_backward = _pair(ops.softmax_cross_entropy, grads=("logits",))

    def batchnorm_backward(
        self, dout: np.ndarray, cache: TorchCache, mode: str = "fused"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dout, cache, mode="fused") -> (dx, dgamma, dbeta)``; dout: x's shape.

        mode ("staged" or "fused") picks the numpy backends' formula; it is checked for the
        same errors, but here autograd computes the gradient either way.
        """
        mode = BatchNormBackward(mode)
        return self._batchnorm_backward(dout, cache)  # type: ignore[attr-defined]

    def softmax_cross_entropy(
        self, logits: np.ndarray, y: np.ndarray, smoothing: float = 0.0
    ) -> tuple[float, np.ndarray]:
        """Mean softmax cross-entropy and its gradient.

        logits: (N, K); y: (N,) integer labels; smoothing: label smoothing ε in [0, 1) ->
        (loss, dlogits), dlogits: (N, K).
        """
        # torch would drop a label of -100 and NaN an empty batch
        check_loss_inputs(logits, y, smoothing)
        loss, cache = self._softmax_ce_forward(logits, y, smoothing)
        dlogits = self._softmax_ce_backward(np.ones((), dtype=logits.dtype), cache)
        return float(loss), dlogits


def _install_pairs() -> None:
    """A method pair for every op marked :func:`ops.paired`; a method the class defines itself
    (batch norm's backward, which takes a mode) is kept, with the made one under a leading
    underscore."""
    for p in ops.PAIRED.values():
        forward, backward = _pair(p.op, p.wrt, p.updates, p.optional_dx)
        for method in (forward, backward):
            own = method.__name__ in TorchKernels.__dict__
            setattr(TorchKernels, f"_{method.__name__}" if own else method.__name__, method)


_install_pairs()
