"""The PyTorch module file of a saved model: its layer tree as a literal spec (``model.py``), its
weights as the state dict of the module that spec builds (``model.pt``), and both read back as
a user with torch alone would read them.

The spec is derived from the tree, never written per kind here: a node's registered kind name
and its dataclass fields (enums as their values, pairs as lists), a leaf's input shape beside
them (``in``), containers with their children's specs in place of the children. What a kind
becomes in torch is said once, in :data:`cnnlab.export.standalone.BUILDERS`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import pprint
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import RunError
from cnnlab.export import standalone
from cnnlab.ops import kind_of
from cnnlab.ops.tree import Branches, Chain, Layer, Node, Shape

if TYPE_CHECKING:
    import torch
    from torch import nn

MODULE_FILE = "model.py"
WEIGHTS_FILE = "model.pt"

# The names cnnlab gives a layer's arrays -> the names in torch's module for that layer.
TORCH_NAMES = {"w": "weight", "b": "bias", "gamma": "weight", "beta": "bias"}

# Buffers torch's modules have and cnnlab's layers do not: they keep the built module's value.
TORCH_ONLY = ("num_batches_tracked",)


def spec_of(node: Node, shape: Shape) -> dict[str, Any]:
    """The literal spec of ``node`` for inputs of ``shape`` (per sample): nested dicts, lists,
    strings, numbers, booleans and None, which :func:`standalone.build_node` turns into a
    module.

    Example: ``{"kind": "conv", "out_channels": 6, "kernel": 5, "stride": 1, "pad": 2,
    "bias": True, "dilation": 1, "groups": 1, "in": [1, 28, 28]}``.
    """
    kind = kind_of(node).name
    if isinstance(node, Chain):
        children = []
        for name, child in node.children:
            children.append([name, spec_of(child, shape)])
            shape = child.out_shape(shape)
        return {"kind": kind, "children": children}
    fields = {f.name: _literal(getattr(node, f.name), shape) for f in dataclasses.fields(node)}  # type: ignore[arg-type]
    if isinstance(node, Layer):
        fields["in"] = list(shape)
    return {"kind": kind, **fields}


def _literal(value: object, shape: Shape) -> object:
    """A field's value as a literal; a subtree (a container's branch) takes the container's
    input, ``shape``."""
    if isinstance(value, Layer | Chain | Branches):
        return spec_of(value, shape)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_literal(v, shape) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{type(value).__name__} {value!r} has no literal form for model.py")


def module_source(spec: dict[str, Any], constants: dict[str, object], origin: str) -> str:
    """The text of ``model.py``: the builder (:mod:`cnnlab.export.standalone`, verbatim), then
    ``SPEC`` and ``constants`` as Python literals. origin: a comment line saying where it
    came from."""
    builder = Path(standalone.__file__).read_text().rstrip()
    lines = [f"# {origin}", "# Needs torch only; how to load it: the docstring below.", builder]
    lines += ["", "", "# -- the model ----------------------------------------------------------"]
    for name, value in {"SPEC": spec, **constants}.items():
        text = pprint.pformat(value, width=100, sort_dicts=False)
        if ast.literal_eval(text) != value:  # a value whose repr is not its literal
            raise RunError(f"model.py: {name} does not round-trip as a Python literal")
        lines += ["", f"{name} = {text}"]
    return "\n".join(lines) + "\n"


def torch_state(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A checkpoint's parameters and buffers (``param/``, ``buffer/``) under the names of the
    module the spec builds: ``layer1.0.conv1.w`` -> ``layer1.0.conv1.weight``."""
    import torch

    found = {}
    for key, value in state.items():
        group, _, name = key.partition("/")
        if group in ("param", "buffer"):
            owner, _, leaf = name.rpartition(".")
            found[f"{owner}.{TORCH_NAMES.get(leaf, leaf)}"] = torch.from_numpy(np.array(value))
    return found


def load_weights(module: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Copy a checkpoint's weights into the module built from its spec; a name or shape that
    does not match is one RunError line (a spec and a builder that disagree)."""
    own = module.state_dict()
    given = torch_state(state)
    missing = [k for k in own if k not in given and not k.endswith(TORCH_ONLY)]
    unexpected = [k for k in given if k not in own]
    if missing or unexpected:
        raise RunError(
            f"the exported module does not fit the checkpoint: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    try:
        module.load_state_dict({**own, **given})
    except RuntimeError as exc:  # a shape that differs
        raise RunError(f"the exported module does not fit the checkpoint: {exc}") from None


def load_exported(folder: Path) -> nn.Module:
    """``model.py`` and ``model.pt`` in ``folder`` loaded as its docstring says (torch alone,
    ``weights_only``), in eval mode."""
    import torch

    path = folder / MODULE_FILE
    spec = importlib.util.spec_from_file_location(f"cnnlab_exported_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    net = exported.build()
    net.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return net.eval()
