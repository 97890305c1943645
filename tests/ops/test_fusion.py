"""Fused kinds: which runs of layers a kernel set's executor replaces, and that running them
fused changes no number."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.config import compose
from cnnlab.kernels.im2col import Im2col
from cnnlab.kernels.naive import Naive
from cnnlab.models import build_net, init_state
from cnnlab.nn.numpy_net import NumpyNet
from cnnlab.ops.activation import ReLU
from cnnlab.ops.conv import Conv2d, ConvReLU
from cnnlab.ops.registry import fused
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import leaves, param_specs


class Unfused(Im2col):
    """im2col with its fusion off: every layer on its own kernel."""

    fused = frozenset()


def net(*overrides: str, width: float = 1.0):
    cfg = compose("gradcheck", list(overrides))
    shape = (3, 16, 16)
    return build_net(cfg.model, cfg.norm, shape, width), shape, cfg


def test_lenet_runs_each_conv_with_its_relu():
    tree, shape, _ = net("model=lenet")
    run, absorbed = fused(tree, Im2col.fused)
    assert absorbed == {"relu1": "conv1", "relu2": "conv2"}
    kinds = {leaf.name: type(leaf.layer) for leaf in leaves(run, shape)}
    assert kinds["conv1"] is kinds["conv2"] is ConvReLU
    assert "relu1" not in kinds and kinds["relu3"] is ReLU  # after a linear: left alone
    # Same parameters, same names, same output.
    assert param_specs(run, shape) == param_specs(tree, shape)
    assert run.out_shape(shape) == tree.out_shape(shape)


def test_runs_inside_branches_are_fused_under_their_own_names():
    tree, _, _ = net("model=resnet18", "norm=none")
    _, absorbed = fused(tree, Im2col.fused)
    assert absorbed["relu1"] == "conv1"
    assert absorbed["layer1.0.block.relu1"] == "layer1.0.block.conv1"
    # The block's second conv meets the residual sum, not a ReLU: it stays a conv.
    assert not any(v.endswith("conv2") for v in absorbed.values())
    with_norm, _, _ = net("model=resnet18")  # conv - norm - relu: nothing to fuse
    assert fused(with_norm, Im2col.fused)[1] == {}


def test_only_an_exact_run_is_replaced():
    tail = Sequential((("conv", Conv2d(4, 3)),))  # a conv with nothing after it
    assert fused(tail, Im2col.fused) == (tail, {})
    swapped = Sequential((("relu", ReLU()), ("conv", Conv2d(4, 3))))
    assert fused(swapped, Im2col.fused) == (swapped, {})
    assert fused(tail, Naive.fused) == (tail, {})  # naive runs every layer as written


@pytest.mark.parametrize(
    "overrides", [["model=lenet"], ["model=resnet18", "norm=none"], ["model=alexnet_lite"]]
)
def test_fused_and_unfused_im2col_give_identical_numbers(overrides):
    tree, shape, cfg = net(*overrides, width=0.25)
    params, buffers = init_state(tree, shape, cfg.init, np.random.default_rng(0), np.float32)
    x = np.random.default_rng(1).standard_normal((4, *shape)).astype(np.float32)
    y = np.arange(4) % cfg.model.num_classes
    results = []
    for kernels in (Im2col(threads=2), Unfused(threads=2)):
        model = NumpyNet(tree, kernels, {k: v.copy() for k, v in params.items()}, buffers)
        results.append(model.loss(x, y, rng=np.random.default_rng(2)))
    (loss, grads, logits), (loss2, grads2, logits2) = results
    assert loss == loss2 and np.array_equal(logits, logits2)
    assert all(np.array_equal(grads[k], grads2[k]) for k in params)
    assert NumpyNet(tree, Im2col(), params, buffers).absorbed  # the first really was fused


def test_a_nan_passes_the_fused_relu_as_it_passes_relu():
    """ReLU's gradient passes where its input is NaN (as torch's): fused, too."""
    tree = Sequential((("conv", Conv2d(2, 1, bias=False)), ("relu", ReLU())))
    w = np.ones((2, 1, 1, 1))
    x = np.array([[[[np.nan, 1.0], [-1.0, 2.0]]]])
    dout = np.ones((1, 2, 2, 2))
    grads = []
    for kernels in (Im2col(), Unfused()):
        model = NumpyNet(tree, kernels, {"conv.w": w.copy()}, {})
        model.forward(x)
        grads.append(model.backward(dout))
    assert np.array_equal(grads[0]["conv.w"], grads[1]["conv.w"], equal_nan=True)
    assert np.isnan(grads[0]["conv.w"]).all()


def test_the_backends_run_a_fused_model_as_before():
    tree, shape, cfg = net("model=lenet", width=0.5)
    params, buffers = init_state(tree, shape, cfg.init, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((3, *shape))
    y = np.array([0, 1, 2])
    out = {b: BACKENDS[b].model(tree, params, buffers).loss(x, y) for b in ("im2col", "torch")}
    assert abs(out["im2col"][0] - out["torch"][0]) <= 1e-10 * abs(out["torch"][0])
