"""Local response normalisation against PyTorch (float64 oracle), a loop reference and centred
differences, on every kernel set.

Gradient checks use h = 1e-6 in float64 and the project's relative error
``||a - n|| / max(||a|| + ||n||, 1e-12)`` with a bound of 1e-8; backends and torch agree to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.compare import rel_error
from cnnlab.errors import ShapeError, UsageError
from cnnlab.gradcheck.numeric import numeric_gradient
from cnnlab.kernels.common import NumpyKernels
from cnnlab.kernels.im2col import Im2col
from cnnlab.kernels.naive import Naive
from cnnlab.kernels.torch import TorchKernels

common, im2col, naive = NumpyKernels(), Im2col(), Naive()

H_STEP = 1e-6
GRAD_TOL = 1e-8
TORCH_TOL = 1e-10
KERNEL_SETS = {"naive": naive, "im2col": im2col, "torch": TorchKernels("cpu")}

# (alpha, beta, k): AlexNet's defaults, then values where the cross-channel term matters.
PARAMS = [(1e-4, 0.75, 2.0), (0.5, 0.75, 2.0), (1.0, 1.5, 1.0), (2.0, 0.3, 0.5)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def torch_lrn(x, dout, size, alpha, beta, k):
    """PyTorch's forward and, by autograd, dx for the upstream gradient dout (float64)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = F.local_response_norm(xt, size, alpha=alpha, beta=beta, k=k)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), xt.grad.numpy()


def loop_lrn(x, size, alpha, beta, k):
    """The definition written out channel by channel (an oracle independent of torch)."""
    C = x.shape[1]
    out = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C - 1, c + (size - 1) // 2)
        s = k + alpha / size * (x[:, lo : hi + 1] ** 2).sum(axis=1)
        out[:, c] = x[:, c] / s**beta
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("C", [1, 3, 4, 8])
@pytest.mark.parametrize(("alpha", "beta", "k"), PARAMS)
def test_lrn_matches_torch(rng, size, C, alpha, beta, k):
    x = rng.standard_normal((2, C, 3, 4)) * 1.5
    dout = rng.standard_normal(x.shape)
    out, cache = common.lrn_forward(x, size, alpha, beta, k)
    dx = common.lrn_backward(dout, cache)
    out_t, dx_t = torch_lrn(x, dout, size, alpha, beta, k)
    assert rel_error(out, out_t) <= TORCH_TOL
    assert rel_error(dx, dx_t) <= TORCH_TOL
    np.testing.assert_allclose(out, out_t, rtol=TORCH_TOL, atol=1e-12)
    np.testing.assert_allclose(dx, dx_t, rtol=TORCH_TOL, atol=1e-12)
    np.testing.assert_allclose(out, loop_lrn(x, size, alpha, beta, k), rtol=TORCH_TOL)


def test_defaults_are_alexnets_and_match_the_torch_module(rng):
    x = rng.standard_normal((2, 7, 4, 3)) * 3
    out, _ = common.lrn_forward(x)
    module = torch.nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
    np.testing.assert_allclose(out, module(torch.from_numpy(x)).numpy(), rtol=TORCH_TOL)
    # torch's functional default is k=1: the project's default k=2 must really be used.
    assert not np.allclose(out, F.local_response_norm(torch.from_numpy(x), 5).numpy())


@pytest.mark.parametrize("size", [2, 4, 6])
def test_even_window_reaches_further_back_than_forward(size):
    """Channel c's window is c - size//2 .. c + (size-1)//2, as in torch's padding."""
    C, j = 9, 4
    x = np.ones((1, C, 1, 1))
    x[0, j] = 10.0  # one loud channel: only channels whose window holds j are damped by it
    out, _ = common.lrn_forward(x, size, alpha=1.0, beta=1.0, k=1.0)
    damped = np.flatnonzero(out[0, :, 0, 0] < out[0, 0, 0, 0] * 0.5)
    damped = damped[damped != j]
    expected = [c for c in range(j - (size - 1) // 2, j + size // 2 + 1) if c != j]
    assert damped.tolist() == expected


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize(("shape", "alpha", "beta", "k"), [
    ((2, 7, 3, 3), 0.5, 0.75, 2.0),
    ((2, 3, 2, 3), 1.0, 1.5, 1.0),  # C smaller than most sizes
    ((1, 6, 2, 2), 2.0, 0.3, 0.5),
])  # fmt: skip
def test_lrn_gradient_check(rng, size, shape, alpha, beta, k):
    x = rng.standard_normal(shape) * 1.5
    dout = rng.standard_normal(shape)
    _, cache = common.lrn_forward(x, size, alpha, beta, k)
    dx = common.lrn_backward(dout, cache)
    dx_num = numeric_gradient(
        lambda _: float(np.sum(common.lrn_forward(x, size, alpha, beta, k)[0] * dout)), x, H_STEP
    )
    err = rel_error(dx, dx_num)
    assert err < GRAD_TOL, f"relative error {err:.2e}"
    # The normalisation term is a sizeable part of the gradient here (not x * k^-beta).
    assert rel_error(dx, dout / k**beta) > 1e-2


@pytest.mark.parametrize("size", [1, 2, 4, 5])
@pytest.mark.parametrize(("alpha", "beta", "k"), PARAMS)
def test_kernel_sets_agree(rng, size, alpha, beta, k):
    x = rng.standard_normal((2, 5, 3, 2)) * 1.5
    dout = rng.standard_normal(x.shape)
    results = {}
    for name, kernels in KERNEL_SETS.items():
        out, cache = kernels.lrn_forward(x.copy(), size, alpha, beta, k)
        results[name] = (out, kernels.lrn_backward(dout, cache))
    ref_out, ref_dx = results["torch"]
    for name in ("naive", "im2col"):
        out, dx = results[name]
        assert rel_error(out, ref_out) <= TORCH_TOL, name
        assert rel_error(dx, ref_dx) <= TORCH_TOL, name


@pytest.mark.parametrize("name", list(KERNEL_SETS))
def test_float32_stays_float32(rng, name):
    kernels = KERNEL_SETS[name]
    x64 = rng.standard_normal((2, 6, 3, 3))
    dout64 = rng.standard_normal(x64.shape)
    x, dout = x64.astype(np.float32), dout64.astype(np.float32)
    # numpy float64 scalars must not promote a float32 activation either.
    out, cache = kernels.lrn_forward(x, 3, np.float64(0.5), np.float64(0.75), np.float64(2.0))
    dx = kernels.lrn_backward(dout, cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32
    out64, cache64 = common.lrn_forward(x.astype(np.float64), 3, 0.5, 0.75, 2.0)
    dx64 = common.lrn_backward(dout.astype(np.float64), cache64)
    assert rel_error(out, out64) < 1e-6
    assert rel_error(dx, dx64) < 1e-6


@pytest.mark.parametrize("name", list(KERNEL_SETS))
@pytest.mark.parametrize("shape", [(4, 5), (2, 5, 3), (1, 2, 5, 3, 3)])
def test_lrn_needs_4d_x(name, shape):
    with pytest.raises(ShapeError, match=r"lrn: x must be \(N, C, H, W\)"):
        KERNEL_SETS[name].lrn_forward(np.zeros(shape))


@pytest.mark.parametrize("name", list(KERNEL_SETS))
@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_lrn_size_must_be_a_positive_int(name, size):
    with pytest.raises(UsageError, match="size must be a positive int"):
        KERNEL_SETS[name].lrn_forward(np.ones((1, 3, 2, 2)), size)


@pytest.mark.parametrize("name", list(KERNEL_SETS))
def test_lrn_backward_checks_dout_shape(name):
    kernels = KERNEL_SETS[name]
    _, cache = kernels.lrn_forward(np.ones((1, 3, 2, 2)))
    with pytest.raises(ShapeError):
        kernels.lrn_backward(np.ones((1, 3, 2, 1)), cache)
