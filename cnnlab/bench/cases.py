"""What ``cnnlab bench`` times: registered layer kinds at the shapes of ``bench.cases``.

A case is a layer (from the registry, :mod:`cnnlab.ops`) on an input of a given shape, run
through the same binding as gradcheck's cases and the nets; bench only builds it at its own
shapes and in the run's dtype. ``bench.cases`` comes from ``conf/bench/<target>.yaml``; where
it is null (``bench layers``) every registered kind's own default cases are timed. A case is
built per batch size, because naive's time is estimated from a small batch before it is run at
the full one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import CnnlabError, UsageError
from cnnlab.kernels.protocol import KernelSet
from cnnlab.ops import LayerKind, kinds
from cnnlab.ops.cases import layer_case, with_variant
from cnnlab.ops.tree import Layer, Node

if TYPE_CHECKING:
    from cnnlab.schema import BenchSettings


@dataclass(frozen=True)
class Built:
    """One case at one batch size: its arrays' maker and its kernel pair."""

    make: Callable[[np.random.Generator], dict[str, Any]]
    forward: Callable[[KernelSet, dict[str, Any]], tuple[Any, Any]]
    backward: Callable[[KernelSet, Any, Any], tuple[Any, ...]]


@dataclass(frozen=True)
class BenchCase:
    """One row group of the table: a layer at the configured shapes, in one variant.

    Attributes:
        name: the case's name in the config (``course``, ``resnet-64``).
        kind: the layer kind's registration.
        variant: the value of the kind's variant attribute (batch norm's backward), else empty.
        layer: the layer (None for the loss and containers, which have no options).
        x: the input's shape, batch first.
    """

    name: str
    kind: LayerKind
    variant: str
    layer: Node | None
    x: tuple[int, ...]

    @property
    def batch(self) -> int:
        return self.x[0]

    def build(self, batch: int, dtype: np.dtype) -> Built:
        """The case at ``batch`` samples, its floating arrays in ``dtype``."""
        # Drawn like the kind's own gradient checks (no ReLU kinks, no max-pool ties).
        check = dataclasses.replace(
            self.kind.checks[0],
            variant=self.variant,
            layer=with_variant(self.kind, self.layer, self.variant),
            x=(batch, *self.x[1:]),
        )
        case = layer_case(self.kind, check)

        def make(rng: np.random.Generator) -> dict[str, Any]:
            # gradcheck draws float64; only floating arrays change dtype (labels, masks stay).
            return {
                k: v.astype(dtype) if np.issubdtype(np.asarray(v).dtype, np.floating) else v
                for k, v in case.make(rng).items()
            }

        return Built(make, case.forward, case.backward)

    def flops(self, batch: int) -> float | None:
        """Forward FLOPs (multiply-add = 2) of conv and linear layers; None for the others."""
        if not isinstance(self.layer, Layer):
            return None
        per_sample = self.layer.flops(self.x[1:])
        return float(batch * per_sample) if per_sample else None


def _from_config(i: int, spec: dict[str, Any], batch: int | None) -> list[BenchCase]:
    """The cases of one ``bench.cases`` entry: ``layer``, ``x``, optional ``name`` and
    ``variants``, and the layer's own keys."""
    if not isinstance(spec, dict) or "layer" not in spec or "x" not in spec:
        raise UsageError(f"bench.cases[{i}]: give a dict with at least layer and x")
    kind = kinds().get(spec["layer"])
    if kind is None or not kind.checks:
        choices = ", ".join(k.name for k in kinds().values() if k.checks)
        raise UsageError(
            f"bench.cases[{i}]: unknown layer {spec['layer']!r}; choose from {choices}"
        )
    x = tuple(int(n) for n in spec["x"])
    if batch is not None:
        x = (batch, *x[1:])
    name = str(spec.get("name", kind.name))
    options = {k: v for k, v in spec.items() if k not in ("name", "layer", "x", "variants")}
    try:
        if kind.from_spec is not None:
            layer = kind.from_spec(options, x)
        elif kind.layer is not None and issubclass(kind.layer, Layer):
            layer = kind.layer(**{k: _tupled(v) for k, v in options.items()})
        else:
            layer = None
        if isinstance(layer, Layer):
            layer.out_shape(x[1:])  # a case that does not fit fails now, in one line
    except (TypeError, ValueError, CnnlabError) as exc:
        raise UsageError(f"bench.cases[{i}] ({name}): {exc}") from None
    variants = [str(v) for v in spec.get("variants") or [""]]
    return [BenchCase(name, kind, v, layer, x) for v in variants]


def _tupled(value: Any) -> Any:
    """Config lists as tuples: layer options are ints or (h, w) pairs."""
    return tuple(value) if isinstance(value, list) else value


def _defaults(batch: int | None) -> list[BenchCase]:
    """Every registered kind's own default cases."""
    return [
        BenchCase(b.name, kind, v, b.layer, b.x if batch is None else (batch, *b.x[1:]))
        for kind in kinds().values()
        for b in kind.bench
        for v in b.variants or ("",)
    ]


def cases(settings: BenchSettings) -> list[BenchCase]:
    """The target's cases from ``bench.cases`` (null: every kind's defaults), one per variant;
    ``bench.batch`` replaces every batch size (tests use it for tiny runs)."""
    from omegaconf import OmegaConf

    batch = None if settings.batch is None else int(settings.batch)
    if settings.cases is None:
        out = _defaults(batch)
    else:
        raw = OmegaConf.to_container(settings.cases, resolve=True)
        out = [c for i, spec in enumerate(raw) for c in _from_config(i, spec, batch)]  # type: ignore[arg-type]
    if not out and settings.target != "model":
        raise UsageError(f"bench={settings.target}: bench.cases is empty")
    return out
