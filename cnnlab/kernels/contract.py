"""The input contract every kernel set keeps alike, checked in one place.

Arrays are float32 or float64, all of one dtype in a call (kernels keep that dtype and never
promote); masks are bool; a backward's ``dout`` has the shape of its forward's output. A
forward's cache holds references to the caller's arrays where the backend needs them (the
numpy backends keep x, w, ... as CS231n's caches do), so changing those arrays in place between
forward and backward changes the gradients; the torch backends keep copies on their device.
The loss's labels and its label smoothing ε (in [0, 1)) are refused alike on every set by
:func:`cnnlab.kernels.common.loss.check_loss_inputs`.

:func:`check_arrays` is called by every forward of every kernel set (the numpy sets through
:func:`contracted`, the torch adapter directly); :class:`Cached` carries the output shape from
a numpy forward to its backward.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.errors import ArgumentError, ShapeError

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Arguments that are not float data: labels are checked by the loss, masks must be bool.
LABELS = ("y",)
MASKS = ("mask",)


def check_arrays(layer: str, arguments: Iterable[tuple[str, object]]) -> None:
    """One ArgumentError naming the argument unless every array among ``arguments`` (name,
    value pairs) is float32 or float64, all of one dtype, and every mask is bool."""
    first: tuple[str, np.dtype] | None = None
    for name, value in arguments:
        dtype = getattr(value, "dtype", None)
        if dtype is None or isinstance(value, np.generic) or name in LABELS:
            continue  # not an array (a numpy scalar stride is a number), or labels
        if not isinstance(dtype, np.dtype):  # a torch tensor's: torch.float32 -> float32
            dtype = np.dtype(str(dtype).removeprefix("torch."))
        if name in MASKS:
            if dtype != np.bool_:
                raise ArgumentError(f"{layer}: {name} must be a bool array, got dtype {dtype}")
            continue
        if dtype not in FLOATS:
            raise ArgumentError(f"{layer}: {name} must be float32 or float64, got dtype {dtype}")
        if first is None:
            first = (name, dtype)
        elif dtype != first[1]:
            raise ArgumentError(
                f"{layer}: {name} is {dtype} but {first[0]} is {first[1]}: give every array "
                "one dtype"
            )


def check_dout(layer: str, dout: object, out_shape: tuple[int, ...]) -> None:
    """A ShapeError unless ``dout`` has the forward output's shape; an ArgumentError unless it
    is a float array."""
    shape = tuple(np.shape(dout))  # type: ignore[arg-type]
    if shape != tuple(out_shape):
        raise ShapeError(
            f"{layer}_backward: dout {shape} must have the shape of out {tuple(out_shape)}"
        )
    check_arrays(f"{layer}_backward", [("dout", dout)])


@dataclass(frozen=True)
class Cached:
    """A numpy forward's cache with the shape of the output it returned."""

    out_shape: tuple[int, ...]
    cache: Any


def contracted(layer: str, forward: Callable, backward: Callable, method: bool) -> tuple:
    """``forward`` and ``backward`` with the contract checked: the forward's arrays
    (:func:`check_arrays`) and the backward's ``dout`` (:func:`check_dout`). method: they take
    ``self`` first (else they are plain functions, as static methods are). The arrays of a
    ``*xs`` argument are named ``xs[0]``, ``xs[1]``, ... in errors."""
    params = list(inspect.signature(forward).parameters.values())[int(method) :]
    star = next((i for i, p in enumerate(params) if p.kind is p.VAR_POSITIONAL), len(params))
    names = [p.name for p in params[:star]]
    skip = int(method)

    def named(args: tuple) -> list[tuple[str, Any]]:
        found = list(zip(names, args, strict=False))
        if star < len(params):
            found += [(f"{params[star].name}[{i}]", v) for i, v in enumerate(args[star:])]
        return found

    @functools.wraps(forward)
    def checked_forward(*args: Any, **kwargs: Any) -> tuple[Any, Cached]:
        check_arrays(layer, [*named(args[skip:]), *kwargs.items()])
        out, cache = forward(*args, **kwargs)
        return out, Cached(np.shape(out), cache)

    @functools.wraps(backward)
    def checked_backward(*args: Any, **kwargs: Any) -> Any:
        dout, cache = args[skip], args[skip + 1]
        if not isinstance(cache, Cached):
            raise ArgumentError(f"{layer}_backward: cache must come from this kernel set's forward")
        check_dout(layer, dout, cache.out_shape)
        return backward(*args[:skip], dout, cache.cache, *args[skip + 2 :], **kwargs)

    checked_forward.contracted = checked_backward.contracted = True  # type: ignore[attr-defined]
    return checked_forward, checked_backward


def install(cls: type, layers: Iterable[str]) -> None:
    """Put the contract on every ``<layer>_forward``/``<layer>_backward`` pair of ``cls``
    (its own and inherited ones), once."""
    for layer in layers:
        fwd = inspect.getattr_static(cls, f"{layer}_forward")
        bwd = inspect.getattr_static(cls, f"{layer}_backward")
        static = isinstance(fwd, staticmethod)
        f = fwd.__func__ if static else fwd
        b = bwd.__func__ if isinstance(bwd, staticmethod) else bwd
        if getattr(f, "contracted", False):
            continue
        checked = contracted(layer, f, b, method=not static)
        wrap = staticmethod if static else (lambda fn: fn)
        setattr(cls, f"{layer}_forward", wrap(checked[0]))
        setattr(cls, f"{layer}_backward", wrap(checked[1]))
