"""Shared numpy kernels against PyTorch (float64 oracle) and centred-difference gradients.

Gradient checks use h = 1e-6 in float64 and the project's relative error
``||a - n|| / max(||a|| + ||n||, 1e-12)`` with a bound of 1e-8.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.compare import rel_error
from cnnlab.errors import ShapeError, UsageError
from cnnlab.gradcheck.numeric import numeric_gradient
from cnnlab.kernels.common import NumpyKernels, dropout_mask

common = NumpyKernels()  # the kernels naive and im2col share

H_STEP = 1e-6
GRAD_TOL = 1e-8
TORCH_RTOL = 1e-10
TORCH_ATOL = 1e-12


def numeric_grad(f, x, dout):
    """Centred-difference gradient of ``sum(f() * dout)`` with respect to x (perturbed in place)."""
    return numeric_gradient(lambda _: float(np.sum(f() * dout)), x, H_STEP)


def assert_grad(analytic, f, x, dout):
    err = rel_error(analytic, numeric_grad(f, x, dout))
    assert err < GRAD_TOL, f"relative error {err:.2e}"


def tt(a):
    """A float64 torch leaf that records gradients."""
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def close(a, b):
    np.testing.assert_allclose(a, b.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---- relu -------------------------------------------------------------------------------------


def test_relu_matches_torch(rng):
    x = rng.standard_normal((3, 4, 5))
    dout = rng.standard_normal(x.shape)
    out, cache = common.relu_forward(x)
    dx = common.relu_backward(dout, cache)
    xt = tt(x)
    ot = F.relu(xt)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)


def test_relu_gradient_check(rng):
    # Kept away from 0, where ReLU has no derivative.
    x = rng.uniform(0.1, 1.0, (4, 6)) * rng.choice([-1.0, 1.0], (4, 6))
    dout = rng.standard_normal(x.shape)
    _, cache = common.relu_forward(x)
    assert_grad(common.relu_backward(dout, cache), lambda: common.relu_forward(x)[0], x, dout)


# ---- linear, flatten, add ---------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(rng, bias):
    x, w = rng.standard_normal((5, 7)), rng.standard_normal((3, 7))
    b = rng.standard_normal(3) if bias else None
    dout = rng.standard_normal((5, 3))
    out, cache = common.linear_forward(x, w, b)
    dx, dw, db = common.linear_backward(dout, cache)
    xt, wt = tt(x), tt(w)
    bt = tt(b) if bias else None
    ot = F.linear(xt, wt, bt)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)
    close(dw, wt.grad)
    if bias:
        close(db, bt.grad)
    else:
        assert db is None


def test_linear_gradient_check(rng):
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    dx, dw, db = common.linear_backward(dout, common.linear_forward(x, w, b)[1])

    def f():
        return common.linear_forward(x, w, b)[0]

    assert_grad(dx, f, x, dout)
    assert_grad(dw, f, w, dout)
    assert_grad(db, f, b, dout)


def test_linear_shape_errors(rng):
    with pytest.raises(ShapeError, match=r"\(4, 5\).*\(3, 6\)"):
        common.linear_forward(np.zeros((4, 5)), np.zeros((3, 6)), None)
    with pytest.raises(ShapeError, match="b must be"):
        common.linear_forward(np.zeros((4, 5)), np.zeros((3, 5)), np.zeros(4))


def test_flatten_round_trip_and_gradient(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    out, cache = common.flatten_forward(x)
    assert out.shape == (2, 60)
    np.testing.assert_array_equal(out, torch.flatten(torch.from_numpy(x), 1).numpy())
    dout = rng.standard_normal(out.shape)
    dx = common.flatten_backward(dout, cache)
    assert dx.shape == x.shape
    assert_grad(dx, lambda: common.flatten_forward(x)[0], x, dout)


def test_add_gradient_and_shape_error(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    dout = rng.standard_normal(a.shape)
    out, cache = common.add_forward(a, b)
    np.testing.assert_array_equal(out, a + b)
    da, db = common.add_backward(dout, cache)
    assert da is not db

    def f():
        return common.add_forward(a, b)[0]

    assert_grad(da, f, a, dout)
    assert_grad(db, f, b, dout)
    with pytest.raises(ShapeError, match=r"\(2, 3, 4\).*\(2, 3, 1\)"):
        common.add_forward(a, np.zeros((2, 3, 1)))


# ---- dropout ----------------------------------------------------------------------------------


def test_dropout_mask_is_seeded_and_has_the_right_rate():
    m1 = dropout_mask(np.random.default_rng(3), (200, 500), 0.3)
    m2 = dropout_mask(np.random.default_rng(3), (200, 500), 0.3)
    assert m1.dtype == bool
    np.testing.assert_array_equal(m1, m2)
    assert abs(m1.mean() - 0.7) < 0.01
    assert dropout_mask(np.random.default_rng(0), (10,), 0.0).all()


def test_dropout_forward_backward(rng):
    p = 0.4
    x = rng.standard_normal((6, 7))
    mask = dropout_mask(rng, x.shape, p)
    dout = rng.standard_normal(x.shape)
    out, cache = common.dropout_forward(x, mask, p)
    np.testing.assert_allclose(out, np.where(mask, x / (1 - p), 0.0), rtol=1e-15)
    dx = common.dropout_backward(dout, cache)
    np.testing.assert_allclose(dx, np.where(mask, dout / (1 - p), 0.0), rtol=1e-15)
    assert_grad(dx, lambda: common.dropout_forward(x, mask, p)[0], x, dout)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(UsageError, match=r"\[0, 1\)"):
        common.dropout_forward(np.ones(3), np.ones(3, dtype=bool), p)
    with pytest.raises(UsageError):
        dropout_mask(np.random.default_rng(0), (3,), p)


def test_dropout_mask_shape_mismatch():
    with pytest.raises(ShapeError):
        common.dropout_forward(np.ones((2, 3)), np.ones((3, 2), dtype=bool), 0.5)


# ---- loss -------------------------------------------------------------------------------------


def test_softmax_cross_entropy_matches_torch(rng):
    logits = rng.standard_normal((6, 10)) * 3
    y = rng.integers(0, 10, 6)
    loss, dlogits = common.softmax_cross_entropy(logits, y)
    lt = tt(logits)
    loss_t = F.cross_entropy(lt, torch.from_numpy(y))
    loss_t.backward()
    assert isinstance(loss, float)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    close(dlogits, lt.grad)


def test_softmax_cross_entropy_gradient_check(rng):
    logits = rng.standard_normal((4, 5))
    y = np.array([0, 4, 2, 2])
    _, dlogits = common.softmax_cross_entropy(logits, y)
    assert_grad(dlogits, lambda: common.softmax_cross_entropy(logits, y)[0], logits, 1.0)


def test_initial_loss_is_ln_num_classes():
    loss, _ = common.softmax_cross_entropy(np.zeros((8, 10)), np.arange(8))
    assert loss == pytest.approx(math.log(10), rel=1e-12)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]])
    loss, dlogits = common.softmax_cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx(math.log(2) / 2)


def test_softmax_cross_entropy_errors():
    with pytest.raises(UsageError, match=r"\[0, 3\)"):
        common.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(UsageError):
        common.softmax_cross_entropy(np.zeros((2, 3)), np.array([-1, 0]))
    with pytest.raises(UsageError, match="integers"):
        common.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ShapeError):
        common.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


# ---- global average pooling -------------------------------------------------------------------


def test_global_avgpool_matches_torch(rng):
    x = rng.standard_normal((2, 3, 5, 4))
    dout = rng.standard_normal((2, 3))
    out, cache = common.global_avgpool_forward(x)
    dx = common.global_avgpool_backward(dout, cache)
    xt = tt(x)
    ot = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)
    assert_grad(dx, lambda: common.global_avgpool_forward(x)[0], x, dout)


def test_global_avgpool_needs_4d():
    with pytest.raises(ShapeError):
        common.global_avgpool_forward(np.zeros((2, 3)))


# ---- batch norm -------------------------------------------------------------------------------

BN_SHAPES = [(6, 4), (3, 4, 3, 5), (1, 3, 2, 3)]


def bn_params(rng, C):
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    running_mean, running_var = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    return gamma, beta, running_mean, running_var


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("mode", ["staged", "fused"])
def test_batchnorm_train_matches_torch(rng, shape, mode):
    x = rng.standard_normal(shape) * 2 + 0.5
    dout = rng.standard_normal(shape)
    gamma, beta, rm, rv = bn_params(rng, shape[1])
    rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    out, cache = common.batchnorm_forward(x, gamma, beta, rm, rv, train=True)
    dx, dgamma, dbeta = common.batchnorm_backward(dout, cache, mode=mode)
    xt, gt, bt = tt(x), tt(gamma), tt(beta)
    ot = F.batch_norm(xt, rm_t, rv_t, gt, bt, training=True, momentum=0.1, eps=1e-5)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)
    close(dgamma, gt.grad)
    close(dbeta, bt.grad)
    # The running statistics were updated in place, exactly as torch updates its buffers.
    close(rm, rm_t)
    close(rv, rv_t)


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("mode", ["staged", "fused"])
def test_batchnorm_eval_matches_torch(rng, shape, mode):
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    gamma, beta, rm, rv = bn_params(rng, shape[1])
    rm0, rv0 = rm.copy(), rv.copy()
    out, cache = common.batchnorm_forward(x, gamma, beta, rm, rv, train=False)
    dx, dgamma, dbeta = common.batchnorm_backward(dout, cache, mode=mode)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    xt, gt, bt = tt(x), tt(gamma), tt(beta)
    ot = F.batch_norm(xt, torch.from_numpy(rm), torch.from_numpy(rv), gt, bt, training=False)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)
    close(dgamma, gt.grad)
    close(dbeta, bt.grad)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_staged_equals_fused(rng, shape):
    x = rng.standard_normal(shape) * 3 - 1
    dout = rng.standard_normal(shape)
    gamma, beta, rm, rv = bn_params(rng, shape[1])
    _, cache = common.batchnorm_forward(x, gamma, beta, rm, rv)
    staged = common.batchnorm_backward(dout, cache, mode="staged")
    fused = common.batchnorm_backward(dout, cache, mode="fused")
    for s, f in zip(staged, fused, strict=True):
        assert rel_error(s, f) <= 1e-12


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 4)])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mode", ["staged", "fused"])
def test_batchnorm_gradient_check(rng, shape, train, mode):
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    gamma, beta, rm, rv = bn_params(rng, shape[1])

    def f():
        # Fresh copies: the forward pass updates the running statistics in place.
        return common.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), train=train)[0]

    _, cache = common.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), train=train)
    dx, dgamma, dbeta = common.batchnorm_backward(dout, cache, mode=mode)
    assert_grad(dx, f, x, dout)
    assert_grad(dgamma, f, gamma, dout)
    assert_grad(dbeta, f, beta, dout)


def test_batchnorm_training_needs_more_than_one_value_per_channel(rng):
    gamma, beta, rm, rv = bn_params(rng, 4)
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        common.batchnorm_forward(rng.standard_normal((1, 4)), gamma, beta, rm, rv, train=True)
    # In eval a single sample is fine, and so is spatial N=1 in training (m = H*W > 1).
    common.batchnorm_forward(rng.standard_normal((1, 4)), gamma, beta, rm, rv, train=False)
    out, _ = common.batchnorm_forward(rng.standard_normal((1, 4, 2, 2)), gamma, beta, rm, rv)
    assert np.isfinite(out).all()


def test_batchnorm_errors(rng):
    x = rng.standard_normal((4, 3, 2, 2))
    gamma, beta, rm, rv = bn_params(rng, 3)
    _, cache = common.batchnorm_forward(x, gamma, beta, rm, rv)
    with pytest.raises(ValueError, match="staged, fused"):
        common.batchnorm_backward(x, cache, mode="autograd")
    with pytest.raises(ShapeError, match=r"gamma must be \(3,\).*\(4,\)"):
        common.batchnorm_forward(x, np.ones(4), beta, rm, rv)
    with pytest.raises(ShapeError, match="running_var"):
        common.batchnorm_forward(x, gamma, beta, rm, np.ones(2))
    with pytest.raises(ShapeError):
        common.batchnorm_forward(np.zeros((2, 3, 4)), gamma, beta, rm, rv)


# ---- layer norm and group norm ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 7), (3, 4, 3, 5)])
def test_layernorm_matches_torch(rng, shape):
    x = rng.standard_normal(shape) * 2 + 1
    dout = rng.standard_normal(shape)
    C = shape[1]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    out, cache = common.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = common.layernorm_backward(dout, cache)
    xt, gt, bt = tt(x), tt(gamma), tt(beta)
    if len(shape) == 2:
        ot = F.layer_norm(xt, (C,), gt, bt, eps=1e-5)
    else:
        # Per-channel affine over (C, H, W) statistics is group norm with one group.
        ot = F.group_norm(xt, 1, gt, bt, eps=1e-5)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)
    close(dgamma, gt.grad)
    close(dbeta, bt.grad)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_groupnorm_matches_torch(rng, groups):
    shape = (3, 6, 4, 3)
    x = rng.standard_normal(shape) * 2 - 1
    dout = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    out, cache = common.groupnorm_forward(x, gamma, beta, groups)
    dx, dgamma, dbeta = common.groupnorm_backward(dout, cache)
    xt, gt, bt = tt(x), tt(gamma), tt(beta)
    ot = F.group_norm(xt, groups, gt, bt, eps=1e-5)
    ot.backward(torch.from_numpy(dout))
    close(out, ot)
    close(dx, xt.grad)
    close(dgamma, gt.grad)
    close(dbeta, bt.grad)


@pytest.mark.parametrize(
    ("forward", "backward", "shape", "extra"),
    [
        (common.layernorm_forward, common.layernorm_backward, (3, 5), ()),
        (common.layernorm_forward, common.layernorm_backward, (2, 3, 2, 3), ()),
        (common.groupnorm_forward, common.groupnorm_backward, (2, 4, 2, 3), (2,)),
    ],
)
def test_layer_and_group_norm_gradient_check(rng, forward, backward, shape, extra):
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])

    def f():
        return forward(x, gamma, beta, *extra)[0]

    dx, dgamma, dbeta = backward(dout, forward(x, gamma, beta, *extra)[1])
    assert_grad(dx, f, x, dout)
    assert_grad(dgamma, f, gamma, dout)
    assert_grad(dbeta, f, beta, dout)


def test_layer_and_group_norm_errors(rng):
    x = rng.standard_normal((2, 6, 3, 3))
    with pytest.raises(ShapeError, match=r"C=6.*\(4\)|\(4\).*C=6"):
        common.groupnorm_forward(x, np.ones(6), np.zeros(6), 4)
    with pytest.raises(ShapeError):
        common.groupnorm_forward(x, np.ones(6), np.zeros(6), 0)
    with pytest.raises(ShapeError, match=r"beta must be \(6,\).*\(5,\)"):
        common.groupnorm_forward(x, np.ones(6), np.zeros(5), 3)
    with pytest.raises(ShapeError, match=r"gamma must be \(6,\).*\(6, 3, 3\)"):
        common.layernorm_forward(x, np.ones((6, 3, 3)), np.zeros(6))
    with pytest.raises(ShapeError):
        common.groupnorm_forward(np.zeros((2, 6)), np.ones(6), np.zeros(6), 2)


# ---- dtype ------------------------------------------------------------------------------------


def _float32_cases(rng):
    x4 = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    x2 = rng.standard_normal((5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    g, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    mask = np.ones(x4.shape, dtype=bool)
    return [
        (common.relu_forward, common.relu_backward, (x4,)),
        (common.linear_forward, common.linear_backward, (x2, w, np.zeros(3, np.float32))),
        (common.flatten_forward, common.flatten_backward, (x4,)),
        (common.add_forward, common.add_backward, (x4, x4)),
        (common.concat_forward, common.concat_backward, (x4, x4[:, :1])),
        (
            common.channel_gate_forward,
            common.channel_gate_backward,
            (x4, g[None].repeat(2, axis=0)),
        ),
        (common.dropout_forward, common.dropout_backward, (x4, mask, 0.5)),
        (common.global_avgpool_forward, common.global_avgpool_backward, (x4,)),
        (common.batchnorm_forward, common.batchnorm_backward, (x4, g, b, rm, rv)),
        # float64 running statistics must not promote a float32 activation in eval.
        (
            common.batchnorm_forward,
            common.batchnorm_backward,
            (x2, g, b, np.zeros(4), np.ones(4), False),
        ),
        (common.layernorm_forward, common.layernorm_backward, (x4, g, b)),
        (common.groupnorm_forward, common.groupnorm_backward, (x4, g, b, 2)),
    ]


def test_float32_stays_float32(rng):
    for forward, backward, args in _float32_cases(rng):
        out, cache = forward(*args)
        assert out.dtype == np.float32, forward.__name__
        grads = backward(np.ones_like(out), cache)
        for g in grads if isinstance(grads, tuple) else (grads,):
            if g is not None:
                assert g.dtype == np.float32, backward.__name__
    loss, dlogits = common.softmax_cross_entropy(np.zeros((3, 10), np.float32), np.arange(3))
    assert isinstance(loss, float)
    assert dlogits.dtype == np.float32


def test_batchnorm_running_stats_keep_their_dtype(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    common.batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), rm, rv)
    assert rm.dtype == np.float32 and rv.dtype == np.float32
