"""Weight initialisation, drawn in numpy from the seed and copied into every backend.

The torch backend never calls ``torch.nn.init``: every backend starts from the arrays made here,
so the same seed gives the same initial weights everywhere.

For a conv weight ``(F, C, HH, WW)`` (C: the channels each filter sees, C/groups):
``fan_in = C·HH·WW``, ``fan_out = F·HH·WW``; for a linear weight ``(D_out, D_in)``:
``fan_in = D_in``, ``fan_out = D_out``. The schemes, by variance:

- ``xavier``:  ``W ~ N(0, 1/fan_in)``, the 1/fan_in variant of CS231n and LeCun et al.
  (not torch's ``xavier_normal_``).
- ``glorot``:  ``W ~ N(0, 2/(fan_in + fan_out))``, Glorot & Bengio; this is torch's
  ``xavier_normal_`` (gain 1).
- ``kaiming``: ``W ~ N(0, 2/fan_in)``, He et al. for ReLU networks; this is torch's
  ``kaiming_normal_`` with its defaults (mode ``fan_in``, ReLU gain sqrt(2)).
- ``normal``:  ``W ~ N(0, std²)`` for every weight whatever its fans: the fixed
  ``weight_scale`` of the CS231n and EECS 498 solvers. Only this scheme takes a ``std``.

``distribution="uniform"`` draws ``U(-a, a)`` with ``a = sqrt(3·var)``, the uniform law of the
same variance (so ``glorot`` and ``kaiming`` match torch's ``xavier_uniform_`` and
``kaiming_uniform_`` bounds). Biases and norm shifts β start at 0, norm scales γ at 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from cnnlab.choice import Choice
from cnnlab.errors import ShapeError
from cnnlab.ops.tree import ParamSpec


class Scheme(Choice):
    """The weight initialisation schemes (``init=``), defined by :func:`weight_variance`."""

    xavier = "xavier"
    glorot = "glorot"
    kaiming = "kaiming"
    normal = "normal"


class Distribution(Choice):
    """The law a weight is drawn from (``init.distribution``), at the scheme's variance."""

    normal = "normal"
    uniform = "uniform"


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a conv weight or a linear weight.

    Conv ``(F, C, HH, WW)``: ``(C·HH·WW, F·HH·WW)``; linear ``(D_out, D_in)``: ``(D_in, D_out)``.
    Any other rank is a ShapeError.
    """
    if len(shape) == 4:
        F, C, HH, WW = shape
        return C * HH * WW, F * HH * WW
    if len(shape) == 2:
        D_out, D_in = shape
        return D_in, D_out
    raise ShapeError(
        f"init: a weight must be 4-D (F, C, HH, WW) or 2-D (D_out, D_in), got shape {tuple(shape)}"
    )


def weight_variance(scheme: str, fan_in: int, fan_out: int, std: float | None = None) -> float:
    """The variance of a weight under ``scheme`` (a :class:`Scheme` or its name).

    ``xavier``: 1/fan_in; ``glorot``: 2/(fan_in + fan_out); ``kaiming``: 2/fan_in;
    ``normal``: std², the fans aside. ``std`` is required by ``normal`` and refused by the
    others (ValueError), which take their scale from the fans.
    """
    scheme = Scheme(scheme)
    if scheme == Scheme.normal and std is None:
        raise ValueError("init=normal needs a std, the weights' standard deviation")
    if scheme != Scheme.normal and std is not None:
        raise ValueError(f"init={scheme} scales by the fans; only init=normal takes a std")
    match scheme:
        case Scheme.xavier:
            return 1.0 / fan_in
        case Scheme.glorot:
            return 2.0 / (fan_in + fan_out)
        case Scheme.kaiming:
            return 2.0 / fan_in
        case Scheme.normal:
            return float(std) ** 2  # type: ignore[arg-type]


def draw_weight(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    scheme: str,
    distribution: str = "normal",
    dtype: npt.DTypeLike = np.float64,
    std: float | None = None,
) -> np.ndarray:
    """Draw one conv or linear weight of ``shape`` under ``scheme``.

    ``normal``: ``N(0, var)``; ``uniform``: ``U(-a, a)`` with ``a = sqrt(3·var)``, where
    ``var = weight_variance(scheme, *fans(shape), std)``. The draw is made in float64 and then
    cast to ``dtype``, so float32 and float64 runs start from the same values up to rounding.
    """
    normal = Distribution(distribution) == Distribution.normal
    var = weight_variance(scheme, *fans(shape), std)
    if normal:
        w = math.sqrt(var) * rng.standard_normal(shape)
    else:
        a = math.sqrt(3.0 * var)
        w = rng.uniform(-a, a, shape)
    return w.astype(dtype, copy=False)


def init_params(
    specs: Iterable[ParamSpec],
    scheme: str,
    distribution: str,
    rng: np.random.Generator,
    dtype: npt.DTypeLike = np.float64,
    std: float | None = None,
) -> dict[str, np.ndarray]:
    """Initial values for every parameter in ``specs``, keyed by name.

    Weights are drawn by :func:`draw_weight` one after another in the order of ``specs``, so the
    same seed and the same order give the same weights on every backend. Biases and β are zeros,
    γ ones. Draws are made in float64 and then cast to ``dtype``, so float32 and float64 runs
    start from the same values up to rounding. ``std``: the ``normal`` scheme's (only).
    """
    # Check the choices before drawing anything, so a bad config fails even for a weightless net.
    weight_variance(scheme, 1, 1, std)
    Distribution(distribution)
    params: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name in params:  # a model that names two parameters alike: a bug in it
            raise ValueError(f"init: parameter name {spec.name!r} appears twice")
        if spec.role == "weight":
            params[spec.name] = draw_weight(rng, spec.shape, scheme, distribution, dtype, std)
        elif spec.role == "gamma":
            params[spec.name] = np.ones(spec.shape, dtype=dtype)
        else:  # bias, beta
            params[spec.name] = np.zeros(spec.shape, dtype=dtype)
    return params
