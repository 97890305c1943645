"""TorchKernels against independent numpy references (float64) and centred numeric gradients.

The references below are written from the layers' formulas (loops for conv and pooling),
not from any backend, so they check the torch kernel set on its own. Numeric gradients use
h = 1e-6; relative error ``‖a − n‖ / max(‖a‖ + ‖n‖, 1e-12)`` must stay below 1e-8.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from cnnlab.compare import compare
from cnnlab.errors import BackendUnavailableError, ShapeError, UsageError
from cnnlab.gradcheck.numeric import numeric_gradient
from cnnlab.kernels.torch import TorchKernels, cuda_available, ops

H_STEP = 1e-6
GRAD_TOL = 1e-8

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not cuda_available()[0], reason="no CUDA GPU")),
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run torch on one thread: tiny tensors gain nothing from more, and on a busy 2-core
    machine waiting OpenMP threads make every small op many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=DEVICES)
def kern(request):
    return TorchKernels(request.param)


@pytest.fixture
def cpu():
    return TorchKernels("cpu")


# ----------------------------------------------------------------------------- references


def conv_ref(x, w, b, stride=(1, 1), pad=(0, 0)):
    """Cross-correlation by explicit loops over (n, f, i, j)."""
    (sh, sw), (ph, pw) = stride, pad
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = 1 + (H + 2 * ph - HH) // sh, 1 + (W + 2 * pw - WW) // sw
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n, f, i, j in itertools.product(range(N), range(F), range(Ho), range(Wo)):
        window = xp[n, :, i * sh : i * sh + HH, j * sw : j * sw + WW]
        out[n, f, i, j] = np.sum(window * w[f]) + (0.0 if b is None else b[f])
    return out


def pool_ref(x, kernel, stride, pad, reduce, fill):
    """Pooling by loops; ``fill`` is the padding value (-inf for max, 0 for average)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    Ho, Wo = 1 + (H + 2 * ph - kh) // sh, 1 + (W + 2 * pw - kw) // sw
    out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for i, j in itertools.product(range(Ho), range(Wo)):
        window = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
        out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


def per_channel(p, ndim):
    """Reshape a (C,) parameter to broadcast over axis 1 of an ndim array."""
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm_ref(x, gamma, beta, running_mean, running_var, train, momentum=0.1, eps=1e-5):
    """Returns (out, new running mean, new running var); running var uses the unbiased variance."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    if train:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        m = x.size // x.shape[1]
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    else:
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean, running_var
    xhat = (x - per_channel(mean, x.ndim)) / np.sqrt(per_channel(var, x.ndim) + eps)
    return per_channel(gamma, x.ndim) * xhat + per_channel(beta, x.ndim), new_mean, new_var


def layernorm_ref(x, gamma, beta, eps=1e-5):
    axes = tuple(range(1, x.ndim))
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    return per_channel(gamma, x.ndim) * xhat + per_channel(beta, x.ndim)


def groupnorm_ref(x, gamma, beta, groups, eps=1e-5):
    N = x.shape[0]
    xg = x.reshape(N, groups, -1)
    xhat = (xg - xg.mean(axis=2, keepdims=True)) / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    return per_channel(gamma, 4) * xhat.reshape(x.shape) + per_channel(beta, 4)


def softmax_ce_ref(logits, y):
    """Loss = mean(logsumexp(z) - z[y]); dlogits = (softmax(z) - onehot(y)) / N."""
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    loss = np.mean(lse - z[np.arange(N), y])
    dlogits = np.exp(z - lse[:, None])
    dlogits[np.arange(N), y] -= 1
    return loss, dlogits / N


def error(a, n):
    """Relative error per tensor; absolute error when the true gradient is zero."""
    cmp = compare(a, n)
    return cmp.worst_abs if cmp.zero else cmp.rel_error


def numeric_grad(f, a, h=H_STEP):
    """Centred differences of the scalar f() for every element of a (stepped in place)."""
    return numeric_gradient(lambda _: f(), a, h)


# ----------------------------------------------------------------------------- inputs


def distinct(rng, shape):
    """Values 0.1 apart: a step of h never changes which element of a window is the maximum."""
    n = math.prod(shape)
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.1


def away_from_zero(rng, shape):
    """Values with |v| >= 0.1, so a step of h never crosses ReLU's kink."""
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


@dataclass
class Case:
    """One layer call: ``<layer>_forward(*diff, **extra())`` then ``<layer>_backward``.

    diff: the differentiable inputs (leading positional arguments; None for an absent bias);
    extra: builds the other arguments afresh for each call (batch norm changes its running
    statistics in place); backward_kwargs: extra arguments of the backward.
    """

    layer: str
    diff: list
    extra: Callable[[], dict] = dict
    backward_kwargs: dict = field(default_factory=dict)


def running_stats(rng, C):
    mean, var = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    return lambda: {"running_mean": mean.copy(), "running_var": var.copy()}


def make_case(name, rng):
    normal = rng.standard_normal
    gamma = lambda C: rng.uniform(0.5, 1.5, C)  # noqa: E731
    if name == "conv2d":
        return Case(
            "conv2d",
            [normal((2, 3, 6, 5)), normal((4, 3, 3, 2)), normal(4)],
            lambda: {"stride": (2, 1), "pad": (1, 0)},
        )
    if name == "conv2d_nobias":
        return Case(
            "conv2d", [normal((2, 2, 5, 5)), normal((3, 2, 3, 3)), None], lambda: {"pad": 1}
        )
    if name == "conv2d_relu":
        return Case(
            "conv2d_relu",
            [normal((2, 3, 6, 5)), normal((4, 3, 3, 3)), normal(4)],
            lambda: {"stride": 1, "pad": 1},
        )
    if name in ("maxpool2d_first", "maxpool2d_all"):
        ties = name.rsplit("_", 1)[1]
        extra = {"kernel": 3, "stride": 2, "pad": 1, "ties": ties}
        return Case("maxpool2d", [distinct(rng, (2, 2, 5, 6))], lambda: extra)
    if name == "maxpool2d_ceil":
        extra = {"kernel": 3, "stride": 2, "pad": (1, 0), "ties": "all", "ceil_mode": True}
        return Case("maxpool2d", [distinct(rng, (2, 2, 6, 8))], lambda: extra)
    if name in ("avgpool2d", "avgpool2d_ceil"):
        extra = {"kernel": (3, 2), "stride": (2, 1), "pad": (1, 1)}
        extra |= {"stride": 2, "ceil_mode": True} if name.endswith("ceil") else {}
        return Case("avgpool2d", [normal((2, 2, 5, 6))], lambda: extra)
    if name == "adaptive_avgpool2d":
        return Case("adaptive_avgpool2d", [normal((2, 2, 7, 5))], lambda: {"output": (3, 2)})
    if name == "global_avgpool":
        return Case("global_avgpool", [normal((2, 3, 4, 5))])
    if name == "relu":
        return Case("relu", [away_from_zero(rng, (3, 7))])
    if name == "leaky_relu":
        return Case("leaky_relu", [away_from_zero(rng, (3, 7))], lambda: {"slope": 0.2})
    if name in ("sigmoid", "tanh", "gelu", "silu", "relu6"):
        return Case(name, [4 * away_from_zero(rng, (3, 7))])
    if name == "elu":
        return Case("elu", [4 * away_from_zero(rng, (3, 7))], lambda: {"alpha": 0.5})
    if name == "linear":
        return Case("linear", [normal((4, 5)), normal((3, 5)), normal(3)])
    if name == "flatten":
        return Case("flatten", [normal((2, 3, 2, 2))])
    if name == "dropout":
        mask = rng.random((3, 6)) > 0.3
        return Case("dropout", [normal((3, 6))], lambda: {"mask": mask, "p": 0.3})
    if name.startswith("batchnorm"):
        shape = (5, 4) if "dense" in name else (3, 2, 3, 4)
        stats = running_stats(rng, shape[1])
        train = "eval" not in name
        mode = "staged" if "staged" in name else "fused"
        return Case(
            "batchnorm",
            [normal(shape), gamma(shape[1]), normal(shape[1])],
            lambda: {**stats(), "train": train},
            {"mode": mode},
        )
    if name.startswith("layernorm"):
        shape = (4, 6) if "dense" in name else (2, 3, 3, 4)
        return Case("layernorm", [normal(shape), gamma(shape[1]), normal(shape[1])])
    if name == "groupnorm":
        x = normal((2, 6, 3, 2))
        return Case("groupnorm", [x, gamma(6), normal(6)], lambda: {"groups": 3})
    if name == "lrn":
        return Case("lrn", [normal((2, 6, 3, 2)) * 1.5], lambda: {"size": 3, "alpha": 0.8})
    if name == "add":
        return Case("add", [normal((2, 3, 4)), normal((2, 3, 4))])
    if name == "concat":
        return Case("concat", [normal((2, 3, 4, 2)), normal((2, 1, 4, 2)), normal((2, 2, 4, 2))])
    if name == "channel_gate":
        return Case("channel_gate", [normal((2, 3, 4, 5)), normal((2, 3))])
    raise AssertionError(name)


GRAD_CASES = [
    "conv2d",
    "conv2d_nobias",
    "conv2d_relu",
    "maxpool2d_first",
    "maxpool2d_all",
    "maxpool2d_ceil",
    "avgpool2d",
    "avgpool2d_ceil",
    "adaptive_avgpool2d",
    "global_avgpool",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "elu",
    "gelu",
    "silu",
    "relu6",
    "linear",
    "flatten",
    "dropout",
    "batchnorm_dense_train",
    "batchnorm_spatial_train",
    "batchnorm_spatial_train_staged",
    "batchnorm_spatial_eval",
    "layernorm_dense",
    "layernorm_spatial",
    "groupnorm",
    "lrn",
    "add",
    "concat",
    "channel_gate",
]


def test_the_cases_cover_every_registered_kernel_pair():
    from cnnlab.ops import kinds

    pairs = {k.kernel for k in kinds().values() if k.kernel is not None and k.pair}
    covered = {make_case(name, np.random.default_rng(0)).layer for name in GRAD_CASES}
    assert covered == pairs


def run_case(kernels, case, dout=None, rng=None):
    """Forward then backward; returns (out, grads as a tuple, dout)."""
    forward = getattr(kernels, f"{case.layer}_forward")
    backward = getattr(kernels, f"{case.layer}_backward")
    out, cache = forward(*case.diff, **case.extra())
    if dout is None:
        dout = rng.standard_normal(out.shape).astype(out.dtype)
    grads = backward(dout, cache, **case.backward_kwargs)
    return out, grads if isinstance(grads, tuple) else (grads,), dout


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradients_match_numeric(cpu, name):
    rng = np.random.default_rng(0)
    case = make_case(name, rng)
    _, grads, dout = run_case(cpu, case, rng=rng)
    forward = getattr(cpu, f"{case.layer}_forward")

    def loss():
        return float(np.sum(forward(*case.diff, **case.extra())[0] * dout))

    assert len(grads) == len(case.diff)
    for a, g in zip(case.diff, grads, strict=True):
        if a is None:
            assert g is None
            continue
        assert g.shape == a.shape and g.dtype == np.float64
        assert error(g, numeric_grad(loss, a)) < GRAD_TOL


def test_softmax_cross_entropy_gradient_matches_numeric(cpu):
    rng = np.random.default_rng(1)
    logits, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    _, dlogits = cpu.softmax_cross_entropy(logits, y)
    numeric = numeric_grad(lambda: cpu.softmax_cross_entropy(logits, y)[0], logits)
    assert error(dlogits, numeric) < GRAD_TOL


# ----------------------------------------------------------------------------- forward values


@pytest.mark.parametrize(
    ("stride", "pad", "bias"),
    [
        ((1, 1), (0, 0), True),
        ((2, 2), (1, 1), True),
        ((2, 1), (0, 2), False),
        ((3, 2), (1, 0), True),
    ],
)
def test_conv2d_forward_matches_loops(kern, stride, pad, bias):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4) if bias else None
    out, cache = kern.conv2d_forward(x, w, b, stride=stride, pad=pad)
    np.testing.assert_allclose(out, conv_ref(x, w, b, stride, pad), rtol=1e-10, atol=1e-12)
    dx, dw, db = kern.conv2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and dw.shape == w.shape
    if bias:
        np.testing.assert_allclose(db, np.full(4, out[:, 0].size), rtol=1e-12)
    else:
        assert db is None


@pytest.mark.parametrize("ties", ["first", "all"])
@pytest.mark.parametrize(
    ("kernel", "stride", "pad"),
    [((2, 2), None, (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0))],
)
def test_maxpool2d_forward_matches_loops(kern, kernel, stride, pad, ties):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 6))
    out, _ = kern.maxpool2d_forward(x, kernel, stride, pad, ties=ties)
    ref = pool_ref(x, kernel, stride or kernel, pad, np.max, -np.inf)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize(
    ("kernel", "stride", "pad"), [((2, 2), None, (0, 0)), ((3, 2), (2, 1), (1, 1))]
)
def test_avgpool2d_forward_counts_padding_as_zeros(kern, kernel, stride, pad):
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 6))
    out, cache = kern.avgpool2d_forward(x, kernel, stride, pad)
    ref = pool_ref(x, kernel, stride or kernel, pad, np.mean, 0.0)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    # Without padding each input element sits in one window and gets dout / (kh * kw).
    if pad == (0, 0):
        dx = kern.avgpool2d_backward(np.ones_like(out), cache)
        np.testing.assert_allclose(dx[:, :, :6, :6], 0.25)


def test_simple_layers_match_formulas(kern):
    rng = np.random.default_rng(5)
    x4, x2 = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((4, 5))
    w, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    mask = rng.random(x2.shape) > 0.5
    checks = [
        (kern.global_avgpool_forward(x4)[0], x4.mean(axis=(2, 3))),
        (kern.relu_forward(x2)[0], np.maximum(x2, 0)),
        (kern.linear_forward(x2, w, b)[0], x2 @ w.T + b),
        (kern.linear_forward(x2, w, None)[0], x2 @ w.T),
        (kern.flatten_forward(x4)[0], x4.reshape(2, 60)),
        (kern.dropout_forward(x2, mask, 0.25)[0], x2 * mask / 0.75),
        (kern.add_forward(x4, 2 * x4)[0], 3 * x4),
    ]
    for got, want in checks:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_backward_gradients_of_simple_layers(kern):
    rng = np.random.default_rng(6)
    x, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    mask = rng.random(x.shape) > 0.5
    _, cache = kern.relu_forward(x)
    np.testing.assert_array_equal(kern.relu_backward(dout, cache), dout * (x > 0))
    _, cache = kern.dropout_forward(x, mask, 0.5)
    np.testing.assert_allclose(kern.dropout_backward(dout, cache), dout * mask / 0.5)
    _, cache = kern.add_forward(x, -x)
    da, db = kern.add_backward(dout, cache)
    np.testing.assert_array_equal(da, dout)
    np.testing.assert_array_equal(db, dout)


def test_softmax_cross_entropy_matches_hand_formula(kern):
    rng = np.random.default_rng(7)
    logits, y = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
    loss, dlogits = kern.softmax_cross_entropy(logits, y)
    ref_loss, ref_dlogits = softmax_ce_ref(logits, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(dlogits, ref_dlogits, rtol=1e-10, atol=1e-14)
    # Stable for large logits, and ln K for equal ones (the initial-loss sanity check).
    loss, _ = kern.softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 0.0]]), np.array([0, 1]))
    assert loss == pytest.approx(math.log(2) / 2, rel=1e-12)


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 3, 4), (1, 2, 2, 2)])
def test_batchnorm_training_updates_running_stats_in_place(kern, shape):
    rng = np.random.default_rng(8)
    C = shape[1]
    x, gamma, beta = (
        rng.standard_normal(shape) * 2 + 1,
        rng.uniform(0.5, 1.5, C),
        rng.standard_normal(C),
    )
    running_mean, running_var = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    ref_out, ref_mean, ref_var = batchnorm_ref(x, gamma, beta, running_mean, running_var, True, 0.2)
    mean_array, var_array = running_mean, running_var
    out, _ = kern.batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum=0.2)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)
    assert running_mean is mean_array and running_var is var_array
    np.testing.assert_allclose(running_mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, ref_var, rtol=1e-12)


def test_batchnorm_eval_uses_running_stats_and_leaves_them(kern):
    rng = np.random.default_rng(9)
    x, gamma, beta = rng.standard_normal((4, 3)), rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    before = running_mean.copy(), running_var.copy()
    out, _ = kern.batchnorm_forward(x, gamma, beta, running_mean, running_var, train=False)
    ref_out, _, _ = batchnorm_ref(x, gamma, beta, *before, train=False)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12)
    np.testing.assert_array_equal(running_mean, before[0])
    np.testing.assert_array_equal(running_var, before[1])


def test_batchnorm_backward_modes_agree_and_are_checked(cpu):
    case = make_case("batchnorm_spatial_train", np.random.default_rng(10))
    out, cache = cpu.batchnorm_forward(*case.diff, **case.extra())
    dout = np.random.default_rng(11).standard_normal(out.shape)
    staged = cpu.batchnorm_backward(dout, cache, mode="staged")
    fused = cpu.batchnorm_backward(dout, cache)
    for s, f in zip(staged, fused, strict=True):
        np.testing.assert_array_equal(s, f)
    with pytest.raises(ValueError, match="staged, fused"):
        cpu.batchnorm_backward(dout, cache, mode="fast")


def _batchnorm_graph(op, x, gamma, beta, weights):
    """Run a batch norm op on leaf copies; returns (out, running stats, dx, dgamma, dbeta) of
    the loss ``sum(out * weights)``."""
    leaves = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    C = gamma.shape[0]
    running = [torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)]
    out = op(*leaves, *running)
    (out * torch.as_tensor(weights)).sum().backward()
    grads = [t.grad.numpy() for t in leaves]
    return out.detach().numpy(), [r.numpy() for r in running], *grads


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 4)])
def test_batchnorm_across_processes_normalises_like_the_whole_batch(shape):
    """Two ranks holding the same rows: ``batch_sum`` doubles, as an all-reduce would (its
    backward doubles too), and each rank must see the statistics of both copies."""
    rng = np.random.default_rng(12)
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    weights = rng.standard_normal(shape)
    n = shape[0]

    def whole(x, g, b, rm, rv):
        return ops.batchnorm(x, g, b, rm, rv, True, 0.2)

    def across(x, g, b, rm, rv):
        return ops.batchnorm_across(x, g, b, rm, rv, lambda t: t * 2, 2 * n, 0.2)

    ref = _batchnorm_graph(
        whole, np.concatenate([x, x]), gamma, beta, np.concatenate([weights] * 2)
    )
    got = _batchnorm_graph(across, x, gamma, beta, weights)
    np.testing.assert_allclose(got[0], ref[0][:n], rtol=1e-12, atol=1e-12)  # out
    for a, b in zip(got[1], ref[1], strict=True):  # running statistics
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(got[2], ref[2][:n], rtol=1e-10, atol=1e-12)  # dx
    for a, b in zip(got[3:], ref[3:], strict=True):  # each rank: its half of dgamma, dbeta
        np.testing.assert_allclose(2 * a, b, rtol=1e-10, atol=1e-12)

    def alone(x, g, b, rm, rv):
        return ops.batchnorm_across(x, g, b, rm, rv, lambda t: t, n, 0.2)

    same = _batchnorm_graph(alone, x, gamma, beta, weights)
    for a, b in zip(same, _batchnorm_graph(whole, x, gamma, beta, weights), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_batchnorm_across_checks_the_whole_batch():
    x = torch.ones((1, 3), dtype=torch.float64)
    gamma, beta, rm, rv = (torch.ones(3, dtype=torch.float64) for _ in range(4))
    with pytest.raises(ShapeError, match="more than 1 value"):
        ops.batchnorm_across(x, gamma, beta, rm, rv, lambda t: t, 1)
    ops.batchnorm_across(x, gamma, beta, rm, rv, lambda t: t * 2, 2)  # one row here, two in all


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 3, 4)])
def test_layernorm_matches_per_channel_reference(kern, shape):
    rng = np.random.default_rng(12)
    C = shape[1]
    x, gamma, beta = rng.standard_normal(shape), rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    out, _ = kern.layernorm_forward(x, gamma, beta)
    np.testing.assert_allclose(out, layernorm_ref(x, gamma, beta), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_groupnorm_matches_reference(kern, groups):
    rng = np.random.default_rng(13)
    x, gamma, beta = (
        rng.standard_normal((2, 6, 3, 4)),
        rng.uniform(0.5, 1.5, 6),
        rng.standard_normal(6),
    )
    out, _ = kern.groupnorm_forward(x, gamma, beta, groups, eps=1e-3)
    ref = groupnorm_ref(x, gamma, beta, groups, eps=1e-3)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- max-pool ties


def test_maxpool_ties_all_gives_dout_to_every_maximum(kern):
    x = np.ones((1, 1, 4, 4))
    out, cache = kern.maxpool2d_forward(x, 2, ties="all")
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = kern.maxpool2d_backward(dout, cache)
    np.testing.assert_array_equal(out, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(dx, np.kron(dout, np.ones((1, 1, 2, 2))))


def test_maxpool_ties_first_gives_dout_to_the_top_left(kern):
    x = np.ones((1, 1, 4, 4))
    _, cache = kern.maxpool2d_forward(x, 2)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, ::2, ::2] = dout[0, 0]
    np.testing.assert_array_equal(kern.maxpool2d_backward(dout, cache), want)


def test_maxpool_ties_all_with_padding_and_partial_ties(kern):
    # 2x2 windows at stride 1 over [[5, 1, 5], [0, 5, 2]]: both windows have two 5s and share
    # the centre one, which collects both gradients.
    x = np.array([[[[5.0, 1.0, 5.0], [0.0, 5.0, 2.0]]]])
    _, cache = kern.maxpool2d_forward(x, 2, stride=1, ties="all")
    dx = kern.maxpool2d_backward(np.array([[[[10.0, 1.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[10.0, 0.0, 1.0], [0.0, 11.0, 0.0]]]])
    # Padding (-inf) never takes the gradient, and the output has no NaN from it.
    out, cache = kern.maxpool2d_forward(-np.ones((1, 1, 2, 2)), 2, stride=1, pad=1, ties="all")
    np.testing.assert_array_equal(out, -np.ones((1, 1, 3, 3)))
    dx = kern.maxpool2d_backward(np.ones((1, 1, 3, 3)), cache)
    np.testing.assert_array_equal(dx, np.full((1, 1, 2, 2), 4.0))


def test_ops_maxpool_ties_all_under_plain_autograd():
    x = torch.ones(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    ops.maxpool2d(x, 2, ties="all").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


# ----------------------------------------------------------------------------- dtype and cache


@pytest.mark.parametrize("name", GRAD_CASES)
def test_float32_stays_float32(kern, name):
    rng = np.random.default_rng(14)
    case = make_case(name, rng)
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    case.diff = [f32(a) for a in case.diff]
    extra = case.extra
    case.extra = lambda: {  # float arrays only: a mask stays bool
        k: f32(v) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in extra().items()
    }
    out, grads, _ = run_case(kern, case, rng=rng)
    assert out.dtype == np.float32
    assert all(g is None or g.dtype == np.float32 for g in grads)
    _, dlogits = kern.softmax_cross_entropy(
        rng.standard_normal((3, 4)).astype(np.float32), np.array([0, 3, 1])
    )
    assert dlogits.dtype == np.float32


def test_backward_can_repeat_and_ignores_later_input_changes(cpu):
    rng = np.random.default_rng(15)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 3, 3)), np.zeros(2)
    out, cache = cpu.conv2d_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    first = cpu.conv2d_backward(dout, cache)
    x[...] = 0.0
    w[...] = 0.0
    out[...] = 0.0
    second = cpu.conv2d_backward(dout, cache)
    for a, c in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ShapeError, match="dout"):
        cpu.conv2d_backward(dout[:1], cache)


def test_negative_strides_and_no_grad_context(cpu):
    x = np.arange(12.0).reshape(3, 4)[:, ::-1]
    with torch.no_grad():
        out, cache = cpu.relu_forward(x)
        dx = cpu.relu_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dx, (x > 0).astype(float))


# ----------------------------------------------------------------------------- errors


def test_conv_with_empty_output_raises_shape_error(cpu):
    with pytest.raises(ShapeError, match="conv2d"):
        cpu.conv2d_forward(np.zeros((1, 3, 2, 2)), np.zeros((4, 3, 3, 3)), None)


def test_conv_channel_mismatch_raises_shape_error(cpu):
    with pytest.raises(ShapeError, match="channels"):
        cpu.conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(4))


def test_dense_batchnorm_training_on_one_sample_raises_shape_error(cpu):
    x, ones, zeros = np.zeros((1, 4)), np.ones(4), np.zeros(4)
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        cpu.batchnorm_forward(x, ones, zeros, zeros.copy(), ones.copy(), train=True)
    # Evaluation on one sample is fine: it uses the running statistics.
    out, _ = cpu.batchnorm_forward(x, ones, zeros, zeros.copy(), ones.copy(), train=False)
    assert out.shape == (1, 4)


def test_groups_not_dividing_channels_raises_shape_error(cpu):
    x, g = np.zeros((2, 6, 3, 3)), np.ones(6)
    with pytest.raises(ShapeError, match=r"groups \(4\) must be a positive divisor of the C=6"):
        cpu.groupnorm_forward(x, g, g, 4)


def test_other_shape_errors(cpu):
    with pytest.raises(ShapeError, match="maxpool2d"):
        cpu.maxpool2d_forward(np.zeros((1, 1, 2, 2)), 3)
    with pytest.raises(ShapeError, match="linear"):
        cpu.linear_forward(np.zeros((2, 5)), np.zeros((3, 4)), None)
    with pytest.raises(ShapeError, match="add"):
        cpu.add_forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ShapeError, match="layernorm"):
        cpu.layernorm_forward(np.zeros((2, 3, 4, 4)), np.ones(48), np.zeros(48))
    with pytest.raises(ValueError, match="is not a Ties; choose from first, all"):
        cpu.maxpool2d_forward(np.zeros((1, 1, 2, 2)), 2, ties="random")


# ----------------------------------------------------------------------------- API and devices


def test_cuda_without_gpu_raises_backend_unavailable():
    ok, reason = cuda_available()
    if ok:
        pytest.skip("a CUDA GPU is available here")
    assert reason
    with pytest.raises(BackendUnavailableError, match="cuda") as info:
        TorchKernels("cuda")
    assert "\n" not in str(info.value)


def test_unknown_device_is_a_usage_error():
    with pytest.raises(UsageError, match="device"):
        TorchKernels("tpu")


# ----------------------------------------------------------------------------- mixed precision


def test_a_mixed_precision_runs_the_forward_under_autocast_and_returns_float32():
    rng = np.random.default_rng(16)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 7, 7), (4, 3, 3, 3), 4))
    exact, mixed = TorchKernels("cpu"), TorchKernels("cpu", "bf16-mixed")
    assert repr(mixed) == "TorchKernels(device='cpu', precision='bf16-mixed')"
    want, want_cache = exact.conv2d_forward(x, w, b, 1, 1)
    got, cache = mixed.conv2d_forward(x, w, b, 1, 1)
    dout = rng.standard_normal(want.shape).astype(np.float32)
    wants = exact.conv2d_backward(dout, want_cache)
    grads = mixed.conv2d_backward(dout, cache)
    assert got.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    # bfloat16 keeps 8 bits of mantissa: errors near 2^-9, far above float32's.
    for a, ref in zip((got, *grads), (want, *wants), strict=True):
        assert 1e-4 < compare(a, ref).rel_error < 1e-2
    # Layers autocast leaves alone (ReLU) run in float32 as before.
    relu, _ = mixed.relu_forward(x)
    np.testing.assert_array_equal(relu, np.maximum(x, 0))


def test_float16_autocast_is_cuda_s_only_and_a_precision_must_exist():
    with pytest.raises(UsageError, match="16-mixed runs on CUDA only"):
        TorchKernels("cpu", "16-mixed")
    with pytest.raises(UsageError, match="'float16' is not a Precision; choose from 32-true"):
        TorchKernels("cpu", "float16")
