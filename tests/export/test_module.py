"""The exported PyTorch module: every architecture's spec builds torch's own modules that give
cnnlab's logits (eval mode, batch norm's running statistics), the file needs torch alone, and
the ONNX file gives the same logits through onnxruntime."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.config import compose
from cnnlab.export import standalone
from cnnlab.export.module import (
    MODULE_FILE,
    WEIGHTS_FILE,
    load_exported,
    load_weights,
    module_source,
    spec_of,
)
from cnnlab.models import MODELS, build_net
from cnnlab.nn.torch_net import TorchNet
from cnnlab.ops import kind_of, kinds
from cnnlab.ops.activation import ELU, GELU, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Tanh
from cnnlab.ops.conv import Conv2d, ConvReLU
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.norm import LRN, BatchNorm, GroupNorm, LayerNorm
from cnnlab.ops.pool import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool, MaxPool2d
from cnnlab.ops.structure import ChannelGate, Concat, Residual, Sequential
from cnnlab.ops.tree import buffer_specs, leaves, param_specs


def small_model(model: str, *overrides: str, width: float = 0.125):
    """``model`` at ``width`` times its widths on a small input, with random weights
    (:func:`random_state`): (net, in_shape, state)."""
    cfg = compose("summary", [f"model={model}", "data=cifar10", *overrides])
    size = max(16, int(cfg.model.min_size))
    in_shape = (3, size, size)
    net = build_net(cfg.model, cfg.norm, in_shape, width, cfg.act)
    return net, in_shape, random_state(net, in_shape)


def random_state(net, in_shape) -> dict[str, np.ndarray]:
    """Weights of the size He's init draws, affine parameters and batch-norm statistics far
    from their initial values (eval mode must use the running ones)."""
    rng = np.random.default_rng(0)
    state = {}
    for p in param_specs(net, in_shape):
        fan_in = int(np.prod(p.shape[1:])) if len(p.shape) > 1 else 1
        scale = np.sqrt(2 / fan_in) if len(p.shape) > 1 else 0.3
        centre = 1.0 if str(p.role) == "gamma" else 0.0
        value = centre + scale * rng.standard_normal(p.shape)
        state[f"param/{p.name}"] = value.astype(np.float32)
    for b in buffer_specs(net, in_shape):
        value = rng.uniform(0.5, 1.5, b.shape) if b.fill == 1.0 else rng.normal(0, 0.2, b.shape)
        state[f"buffer/{b.name}"] = value.astype(np.float32)
    return state


def cnnlab_logits(net, state, x: np.ndarray) -> np.ndarray:
    """cnnlab's torch executor in eval mode: the logits the export must give."""
    split = {
        g: {k.partition("/")[2]: v for k, v in state.items() if k.startswith(g)}
        for g in ("param/", "buffer/")
    }
    module = TorchNet(net, split["param/"], split["buffer/"]).eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def exported_logits(net, in_shape, state, x: np.ndarray, dtype=torch.float32) -> np.ndarray:
    module = standalone.build(spec_of(net, in_shape), dtype)
    load_weights(module, state)
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x).to(dtype)).double().numpy()


def test_every_layer_kind_has_a_torch_module():
    nets = {name for name, kind in kinds().items() if kind.layer is not None}
    assert nets == set(standalone.BUILDERS)


def test_the_builder_imports_torch_and_the_standard_library_only():
    tree = ast.parse(Path(standalone.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections", "typing", "torch"}


# The same kinds and blocks as a smaller model of the list (resnet18, resnext50_32x4d, vgg11).
LONGER = {"resnet34", "resnet50", "vgg16"}


@pytest.mark.parametrize(
    "model",
    [pytest.param(m, marks=pytest.mark.slow) if m in LONGER else m for m in sorted(MODELS)],
)
def test_every_architecture_gives_cnnlabs_logits(model):
    net, in_shape, state = small_model(model)
    x = np.random.default_rng(1).standard_normal((2, *in_shape)).astype(np.float32)
    expected = cnnlab_logits(net, state, x)
    got = exported_logits(net, in_shape, state, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


def every_kind() -> Sequential:
    """One tree with a layer of every kind (both batch and layer norm's shapes, pools with
    padding and ceil mode, a residual block with a shortcut, a concat with an identity
    branch, a gate): (3, 9, 9) in, 5 logits out."""
    gate = ChannelGate(
        Sequential(
            (
                ("pool", GlobalAvgPool()),
                ("fc1", Linear(4)),
                ("relu", ReLU()),
                ("fc2", Linear(8)),
                ("sigmoid", Sigmoid()),
            )
        )
    )
    body = Sequential((("conv1", Conv2d(8, 3, pad=1, bias=False)), ("bn", BatchNorm())))
    shortcut = Sequential((("conv", Conv2d(8, 1)), ("gn", GroupNorm(2))))
    branches = Concat(
        (
            ("x", None),
            ("b1", Sequential((("conv", ConvReLU(4, 3, pad=2, dilation=2, groups=2)),))),
            ("b2", Sequential((("pool", AvgPool2d(3, 1, 1)), ("act", ReLU6())))),
        )
    )
    return Sequential(
        (
            ("conv", Conv2d(8, (3, 2), stride=(1, 2), pad=(1, 0))),
            ("leaky", LeakyReLU(0.1)),
            ("block", Residual(body, shortcut)),
            ("elu", ELU(0.5)),
            ("gate", gate),
            ("mixed", branches),
            ("ln", LayerNorm()),
            ("lrn", LRN(3)),
            ("gelu", GELU()),
            ("pool", MaxPool2d(2, ceil_mode=True)),
            ("avg", AvgPool2d(2, 2, 1, ceil_mode=True)),
            ("silu", SiLU()),
            ("adaptive", AdaptiveAvgPool2d((2, 3))),
            ("flatten", Flatten()),
            ("drop", Dropout(0.3)),
            ("fc", Linear(6)),
            ("bn1d", BatchNorm()),
            ("tanh", Tanh()),
            ("ln1d", LayerNorm()),
            ("out", Linear(5)),
        )
    )


def test_a_tree_of_every_kind_gives_cnnlabs_logits():
    net, in_shape = every_kind(), (3, 9, 9)
    leaves_kinds = {kind_of(leaf.layer).name for leaf in leaves(net, in_shape)}
    assert leaves_kinds | {"sequential", "residual", "concat", "channel_gate"} == set(
        standalone.BUILDERS
    )
    state = random_state(net, in_shape)
    x = np.random.default_rng(2).standard_normal((3, *in_shape)).astype(np.float32)
    np.testing.assert_allclose(
        exported_logits(net, in_shape, state, x), cnnlab_logits(net, state, x), atol=1e-5
    )


def test_a_float64_run_exports_in_float64():
    net, in_shape, state = small_model("lenet")
    state64 = {k: v.astype(np.float64) for k, v in state.items()}
    module = standalone.build(spec_of(net, in_shape), torch.float64)
    load_weights(module, state64)
    assert {p.dtype for p in module.parameters()} == {torch.float64}


def test_a_checkpoint_that_does_not_fit_the_spec_is_one_error():
    from cnnlab.errors import RunError

    net, in_shape, state = small_model("lenet")
    module = standalone.build(spec_of(net, in_shape))
    del state["param/fc3.b"]
    with pytest.raises(RunError, match=r"missing \['fc3.bias'\]"):
        load_weights(module, state)


def write_export(folder: Path, net, in_shape, state) -> None:
    """model.py and model.pt as ``cnnlab export`` writes them."""
    spec = spec_of(net, in_shape)
    constants = {"INPUT_SHAPE": list(in_shape), "DTYPE": "float32"}
    (folder / MODULE_FILE).write_text(module_source(spec, constants, "a test"))
    module = standalone.build(spec)
    load_weights(module, state)
    torch.save(module.state_dict(), folder / WEIGHTS_FILE)


# Run by `python -I` in the export's folder: cnnlab cannot be imported (a finder refuses it),
# and the files load as model.py's docstring says.
TORCH_ONLY = textwrap.dedent(
    """
    import sys

    class NoCnnlab:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "cnnlab":
                raise ImportError("model.py imported cnnlab")

    sys.meta_path.insert(0, NoCnnlab())
    sys.path.insert(0, ".")
    import torch
    import model

    net = model.build()
    net.load_state_dict(torch.load("model.pt", weights_only=True))
    net.eval()
    with torch.no_grad():
        torch.save(net(torch.load("x.pt")), "logits.pt")
    print("cnnlab loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "cnnlab"))
    """
)


def test_the_files_load_with_torch_alone(tmp_path):
    net, in_shape, state = small_model("se_resnet18")
    write_export(tmp_path, net, in_shape, state)
    x = np.random.default_rng(3).standard_normal((3, *in_shape)).astype(np.float32)
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    result = subprocess.run(
        [sys.executable, "-I", "-c", TORCH_ONLY],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "cnnlab loaded: []" in result.stdout
    logits = torch.load(tmp_path / "logits.pt").numpy()
    np.testing.assert_allclose(logits, cnnlab_logits(net, state, x), atol=1e-5)
    # And in this process, as cnnlab export checks it.
    with torch.no_grad():
        again = load_exported(tmp_path)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(again, logits)


@pytest.mark.parametrize("model", ["every kind", "resnet18"])
def test_onnx_gives_cnnlabs_logits(tmp_path, model):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)
    from cnnlab.export import to_onnx

    if model == "every kind":  # residual, concat, gate, every norm and pool: one export
        net, in_shape = every_kind(), (3, 9, 9)
        state = random_state(net, in_shape)
    else:  # a stage of one basic block each: batch norm, shortcuts, sums
        net, in_shape, state = small_model(model, "model.blocks=[1,1,1,1]")
    module = standalone.build(spec_of(net, in_shape))
    load_weights(module, state)
    x = np.random.default_rng(4).standard_normal((4, *in_shape)).astype(np.float32)
    path = tmp_path / to_onnx.ONNX_FILE
    to_onnx.export(module.eval(), torch.from_numpy(x[:2]), path)
    expected = cnnlab_logits(net, state, x)
    np.testing.assert_allclose(to_onnx.run(path, x), expected, atol=1e-5)  # any batch size
