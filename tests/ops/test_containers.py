"""Channel concatenation and the per-channel gate: their kernels on every backend, nets that use
them on numpy and torch alike, and the shape errors of both."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.compare import rel_error
from cnnlab.config import compose
from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.models import init_state
from cnnlab.ops.activation import ReLU, Sigmoid
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.linear import Linear
from cnnlab.ops.pool import GlobalAvgPool
from cnnlab.ops.structure import ChannelGate, Concat, Sequential
from cnnlab.ops.tree import leaves, out_shape, param_specs, summarize

NAMES = ("naive", "im2col", "torch")


def _run(name, forward, backward, inputs, dout):
    kernels = BACKENDS[name].kernels()
    out, cache = getattr(kernels, forward)(*inputs)
    return out, getattr(kernels, backward)(dout, cache)


def test_concat_of_three_widths_agrees_everywhere_and_splits_dout():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, c, 4, 3)) for c in (3, 5, 2)]
    dout = rng.standard_normal((2, 10, 4, 3))
    runs = {name: _run(name, "concat_forward", "concat_backward", xs, dout) for name in NAMES}
    out, grads = runs["torch"]
    np.testing.assert_array_equal(out, np.concatenate(xs, axis=1))
    assert [g.shape for g in grads] == [x.shape for x in xs]
    np.testing.assert_array_equal(np.concatenate(grads, axis=1), dout)
    for name in ("naive", "im2col"):
        assert rel_error(runs[name][0], out) <= 1e-10
        assert len(runs[name][1]) == 3
        for got, want in zip(runs[name][1], grads, strict=True):
            assert rel_error(got, want) <= 1e-10


@pytest.mark.parametrize("name", ["naive", "im2col"])
def test_numpy_concat_backward_gives_views_of_dout(name):
    xs = [np.ones((2, 1, 2, 2)), np.ones((2, 3, 2, 2))]
    dout = np.random.default_rng(1).standard_normal((2, 4, 2, 2))
    _, grads = _run(name, "concat_forward", "concat_backward", xs, dout)
    assert all(np.shares_memory(g, dout) for g in grads)


def test_gate_agrees_everywhere_with_its_formula():
    rng = np.random.default_rng(2)
    x, s = rng.standard_normal((3, 4, 5, 2)), rng.standard_normal((3, 4))
    dout = rng.standard_normal(x.shape)
    runs = {
        name: _run(name, "channel_gate_forward", "channel_gate_backward", (x, s), dout)
        for name in NAMES
    }
    out, (dx, ds) = runs["torch"]
    np.testing.assert_allclose(out, x * s[:, :, None, None], rtol=1e-14)
    np.testing.assert_allclose(dx, dout * s[:, :, None, None], rtol=1e-14)
    np.testing.assert_allclose(ds, (dout * x).sum(axis=(2, 3)), rtol=1e-12)
    for name in ("naive", "im2col"):
        got_out, (got_dx, got_ds) = runs[name]
        assert rel_error(got_out, out) <= 1e-10
        assert rel_error(got_dx, dx) <= 1e-10 and rel_error(got_ds, ds) <= 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_kernel_shape_and_dtype_errors_name_the_input(name):
    kernels = BACKENDS[name].kernels()
    a, b = np.zeros((2, 3, 4, 4)), np.zeros((2, 1, 4, 5))
    with pytest.raises(ShapeError, match=r"concat: xs\[1\] \(2, 1, 4, 5\) must match xs\[0\]"):
        kernels.concat_forward(a, b)
    with pytest.raises(ArgumentError, match=r"xs\[1\] is float32 but xs\[0\] is float64"):
        kernels.concat_forward(a, a.astype(np.float32))
    with pytest.raises(ShapeError, match=r"channel_gate: .* got x \(2, 3, 4, 4\) and s \(2, 4\)"):
        kernels.channel_gate_forward(a, np.zeros((2, 4)))
    with pytest.raises(ShapeError, match="channel_gate"):
        kernels.channel_gate_forward(a, np.zeros((2, 3, 1, 1)))


# -- the containers in nets ----------------------------------------------------------------------


def _conv(name: str, channels: int, kernel: int = 1, stride: int = 1) -> Sequential:
    return Sequential(((name, Conv2d(channels, kernel, stride, kernel // 2)), ("relu", ReLU())))


INCEPTION = Sequential(
    (
        ("conv1", Conv2d(4, 3, 1, 1)),
        ("relu1", ReLU()),
        (
            "mixed",
            Concat((("x", None), ("b1", _conv("conv", 3)), ("b3", _conv("conv", 2, kernel=3)))),
        ),
        ("pool", GlobalAvgPool()),
        ("fc", Linear(5)),
    )
)

SQUEEZE_EXCITE = Sequential(
    (
        ("conv1", Conv2d(6, 3, 1, 1)),
        ("relu1", ReLU()),
        (
            "se",
            ChannelGate(
                Sequential(
                    (
                        ("pool", GlobalAvgPool()),
                        ("fc1", Linear(3)),
                        ("relu", ReLU()),
                        ("fc2", Linear(6)),
                        ("sigmoid", Sigmoid()),
                    )
                )
            ),
        ),
        ("pool", GlobalAvgPool()),
        ("fc", Linear(5)),
    )
)


def test_parameters_are_named_under_the_block_and_branch():
    names = [p.name for p in param_specs(INCEPTION, (3, 6, 5))]
    assert "mixed.b1.conv.w" in names and "mixed.b3.conv.b" in names
    assert INCEPTION.children[2][1].out_shape((4, 6, 5)) == (9, 6, 5)
    names = [p.name for p in param_specs(SQUEEZE_EXCITE, (3, 6, 5))]
    assert {"se.fc1.w", "se.fc2.b"} <= set(names)


@pytest.mark.parametrize("net", [INCEPTION, SQUEEZE_EXCITE], ids=["concat", "channel_gate"])
def test_a_net_gives_the_same_loss_and_gradients_on_every_backend(net):
    in_shape = (3, 6, 5)
    rng = np.random.default_rng(3)
    params, buffers = init_state(net, in_shape, compose("gradcheck", []).init, rng)
    x, y = rng.standard_normal((4, *in_shape)), rng.integers(0, 5, 4)
    results = {name: BACKENDS[name].model(net, params, buffers).loss(x, y) for name in NAMES}
    t_loss, t_grads, t_logits = results["torch"]
    for name in ("naive", "im2col"):
        loss, grads, logits = results[name]
        assert abs(loss - t_loss) <= 1e-10 * abs(t_loss)
        assert rel_error(logits, t_logits) <= 1e-10
        assert grads.keys() == t_grads.keys() == params.keys()
        for p in grads:
            assert rel_error(grads[p], t_grads[p]) <= 1e-10, (name, p)


def test_the_containers_add_no_rows_and_no_flops_to_the_summary():
    summary = summarize(SQUEEZE_EXCITE, (3, 6, 5))
    rows = [r["name"] for r in summary["layers"]]
    assert rows[:3] == ["conv1", "relu1", "se.pool"]
    assert summary["total_flops"] == sum(
        leaf.layer.flops(leaf.in_shape) for leaf in leaves(SQUEEZE_EXCITE, (3, 6, 5))
    )


def test_a_branch_that_changes_h_w_is_a_shape_error_naming_the_branches():
    block = Concat((("x", None), ("down", _conv("conv", 2, kernel=3, stride=2))))
    net = Sequential((("stem", Conv2d(4, 1)), ("mixed", block)))
    with pytest.raises(
        ShapeError, match=r"mixed: .*channels only, got x \(4, 6, 6\), down \(2, 3, 3\)"
    ):
        out_shape(net, (3, 6, 6))


def test_a_gate_branch_that_is_not_one_factor_per_channel_is_a_shape_error():
    wrong = ChannelGate(Sequential((("pool", GlobalAvgPool()), ("fc", Linear(5)))))
    net = Sequential((("stem", Conv2d(4, 1)), ("se", wrong)))
    with pytest.raises(
        ShapeError, match=r"se: ChannelGate's branch gives \(5,\) per sample, not \(4,\)"
    ):
        out_shape(net, (3, 6, 6))
    with pytest.raises(ShapeError, match=r"ChannelGate needs a \(C, H, W\) feature map"):
        out_shape(Sequential((("se", ChannelGate(Sequential((("fc", Linear(4)),)))),)), (4,))


def test_concat_branches_need_distinct_names():
    with pytest.raises(ArgumentError, match="distinct non-empty names"):
        Concat((("a", None), ("a", _conv("conv", 2))))
    with pytest.raises(ArgumentError, match="distinct non-empty names"):
        Concat(())
