"""Layer kinds, one module per family: each defines its layers and registers them.

Everything about one kind of layer is in its family's module: ``conv.py`` (convolution),
``pool.py``, ``activation.py``, ``linear.py`` (linear and flatten), ``dropout.py``, ``norm.py``
(batch, layer and group norm, LRN), ``loss.py`` (softmax cross-entropy) and ``structure.py``
(the containers). The registry (:mod:`cnnlab.ops.registry`) holds one :class:`LayerKind` per
kind; its docstring says how a registration binds a layer to its kernels. :mod:`cnnlab.ops.tree`
says what a layer tree is (layers, chains, branches) and walks it; :mod:`cnnlab.ops.cases` runs a
kind at given shapes for ``cnnlab gradcheck`` and ``cnnlab bench``.
"""

from __future__ import annotations

# Importing a family registers its kinds, in this order (the order of ``layer=all``).
from cnnlab.ops import (  # noqa: F401
    activation,
    conv,
    dropout,
    linear,
    loss,
    norm,
    pool,
    structure,
)
from cnnlab.ops.cases import layer_case
from cnnlab.ops.registry import LayerCase, LayerKind, checked, kind_of, kinds

__all__ = ["LayerCase", "LayerKind", "checked", "kind_of", "kinds", "layer_cases", "layer_choices"]


def layer_choices() -> list[str]:
    """The ``layer=`` options of ``cnnlab gradcheck``: ``all`` and every checked kind."""
    return ["all", *(k.name for k in checked())]


def layer_cases(layer: str = "all") -> list[LayerCase]:
    """The gradient-check cases of one ``layer=`` option, or of every kind for ``all``."""
    return [
        layer_case(kind, check)
        for kind in checked()
        if layer in ("all", kind.name)
        for check in kind.checks
    ]
