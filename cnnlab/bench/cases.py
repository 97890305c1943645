"""What ``cnnlab bench`` times: layer cases built from the shapes in ``conf/bench/<target>.yaml``.

Each case reuses the kernel pair of a gradcheck case (:mod:`cnnlab.gradcheck.layer_cases`), so
bench and gradcheck run the layers the same way; bench only builds them at its own shapes and
in the run's dtype. A case is built per batch size, because naive's time is estimated from a
small batch before it is run at the full one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.errors import UsageError
from cnnlab.gradcheck import layer_cases as lc
from cnnlab.kernels.geometry import conv_geometry

TARGETS = ("conv", "pool", "batchnorm", "layers", "suite", "model")


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _pair_or_int(value: Any) -> Any:
    return value if value is None or isinstance(value, int) else _ints(value)


# Each builder takes the case's spec (with x's batch already set) and returns gradcheck's
# dict of make/wrt/forward/backward; the optional backward mode is batch norm's variant.
_BUILDERS: dict[str, Callable[[dict, str], dict]] = {
    "conv": lambda s, v: lc.conv_spec(
        _ints(s["x"]),
        _ints(s["w"]),
        bool(s.get("bias", True)),
        _pair_or_int(s.get("stride", 1)),
        _pair_or_int(s.get("pad", 0)),
    ),
    "maxpool": lambda s, v: lc.maxpool_spec(
        _ints(s["x"]),
        _pair_or_int(s["kernel"]),
        _pair_or_int(s.get("stride")),
        _pair_or_int(s.get("pad", 0)),
        "first",
    ),
    "avgpool": lambda s, v: lc.avgpool_spec(
        _ints(s["x"]),
        _pair_or_int(s["kernel"]),
        _pair_or_int(s.get("stride")),
        _pair_or_int(s.get("pad", 0)),
    ),
    "global_avgpool": lambda s, v: lc.global_avgpool_spec(_ints(s["x"])),
    "relu": lambda s, v: lc.relu_spec(_ints(s["x"])),
    "linear": lambda s, v: lc.linear_spec(
        int(s["x"][0]), int(s["x"][1]), int(s["m"]), bool(s.get("bias", True))
    ),
    "flatten": lambda s, v: lc.flatten_spec(_ints(s["x"])),
    "dropout": lambda s, v: lc.dropout_spec(_ints(s["x"]), float(s.get("p", 0.5))),
    "softmax": lambda s, v: lc.softmax_spec(int(s["x"][0]), int(s["x"][1])),
    "batchnorm": lambda s, v: lc.batchnorm_spec(_ints(s["x"]), True, v or "fused"),
    "layernorm": lambda s, v: lc.layernorm_spec(_ints(s["x"])),
    "groupnorm": lambda s, v: lc.groupnorm_spec(_ints(s["x"]), int(s["groups"])),
    "lrn": lambda s, v: lc.lrn_spec(
        _ints(s["x"]), int(s.get("size", 5)), float(s.get("alpha", 1e-4))
    ),
    "residual": lambda s, v: lc.residual_spec(_ints(s["x"])),
}


@dataclass(frozen=True)
class Built:
    """One case at one batch size: its arrays' maker and its kernel pair."""

    make: Callable[[np.random.Generator], dict[str, Any]]
    forward: Callable[[Any, dict[str, Any]], tuple[Any, Any]]
    backward: Callable[[Any, Any, Any], tuple[Any, ...]]


@dataclass(frozen=True)
class BenchCase:
    """One row group of the table: a layer at the configured shapes, in one variant.

    Attributes:
        name: the case's name in the config (``course``, ``resnet-64``).
        layer: the layer kind (a key of the builders).
        variant: batch norm's backward (``staged``/``fused``), else empty.
        spec: the config's dict: ``x`` (batch first) and the layer's own keys.
    """

    name: str
    layer: str
    variant: str
    spec: dict[str, Any]

    @property
    def batch(self) -> int:
        return int(self.spec["x"][0])

    def build(self, batch: int, dtype: np.dtype) -> Built:
        """The case at ``batch`` samples, its floating arrays in ``dtype``."""
        spec = dict(self.spec, x=[batch, *list(self.spec["x"])[1:]])
        parts = _BUILDERS[self.layer](spec, self.variant)
        make64 = parts["make"]

        def make(rng: np.random.Generator) -> dict[str, Any]:
            # gradcheck draws float64; only floating arrays change dtype (labels, masks stay).
            return {
                k: v.astype(dtype) if np.issubdtype(np.asarray(v).dtype, np.floating) else v
                for k, v in make64(rng).items()
            }

        return Built(make, parts["forward"], parts["backward"])

    def flops(self, batch: int) -> float | None:
        """Forward FLOPs (multiply-add = 2) of conv and linear; None for the other layers."""
        s = self.spec
        if self.layer == "conv":
            x, w = (batch, *_ints(s["x"])[1:]), _ints(s["w"])
            stride, pad = _pair_or_int(s.get("stride", 1)), _pair_or_int(s.get("pad", 0))
            ho, wo = conv_geometry(x, w, None, stride, pad)
            (n, c, _, _), (f, _, hh, ww) = x, w
            return 2.0 * n * f * c * hh * ww * ho * wo
        if self.layer == "linear":
            return 2.0 * batch * int(s["x"][1]) * int(s["m"])
        return None


def cases(settings: Any) -> list[BenchCase]:
    """The target's cases from ``bench.cases``, one per batch-norm variant; ``bench.batch``
    replaces every batch size (tests use it for tiny runs)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(settings.cases, resolve=True) if settings.cases else []
    out = []
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict) or "layer" not in spec or "x" not in spec:
            raise UsageError(f"bench.cases[{i}]: give a dict with at least layer and x")
        if spec["layer"] not in _BUILDERS:
            raise UsageError(
                f"bench.cases[{i}]: unknown layer {spec['layer']!r}; "
                f"choose from {', '.join(_BUILDERS)}"
            )
        if settings.batch is not None:
            spec["x"] = [int(settings.batch), *spec["x"][1:]]
        name = str(spec.get("name", spec["layer"]))
        for variant in spec.get("variants") or [""]:
            out.append(BenchCase(name, spec["layer"], str(variant), spec))
    if not out and settings.target != "model":
        raise UsageError(f"bench={settings.target}: bench.cases is empty")
    return out
