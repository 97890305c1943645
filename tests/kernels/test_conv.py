"""conv2d on the numpy backends (naive, im2col) against torch, each other and numeric gradients.

Oracle: ``torch.nn.functional.conv2d`` in float64, gradients by autograd with a random dout.
Relative error per tensor: ``||a - b|| / max(||a|| + ||b||, 1e-12)`` (cnnlab.compare).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.functional import conv2d as torch_conv2d

import cnnlab.kernels.im2col.conv as im2col_conv
import cnnlab.kernels.naive.conv as naive_conv
from cnnlab.compare import rel_error
from cnnlab.errors import ShapeError
from cnnlab.gradcheck.numeric import numeric_gradient
from cnnlab.kernels.geometry import pad_spatial, pair
from cnnlab.kernels.im2col.columns import col2im, im2col, windows
from cnnlab.kernels.torch import TorchKernels

BACKENDS = {"naive": naive_conv, "im2col": im2col_conv}
TOL = 1e-10  # float64: vs torch, and naive vs im2col


rel = rel_error


def make_inputs(shape, bias=True, seed=0, dtype=np.float64):
    """Random x, w, b for ``shape = (N, C, H, W, F, HH, WW)``."""
    N, C, H, W, F_, HH, WW = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F_, C, HH, WW)).astype(dtype)
    b = rng.standard_normal(F_).astype(dtype) if bias else None
    return x, w, b


def run_backend(backend, x, w, b, stride, pad, dout_seed=1):
    """Forward, then backward with a random dout; returns (out, dx, dw, db, dout)."""
    out, cache = backend.conv2d_forward(x, w, b, stride, pad)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    dx, dw, db = backend.conv2d_backward(dout, cache)
    return out, dx, dw, db, dout


def run_torch(x, w, b, stride, pad, dout):
    """The float64 oracle: (out, dx, dw, db) from F.conv2d and autograd."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = None if b is None else torch.tensor(b, dtype=torch.float64, requires_grad=True)
    out = torch_conv2d(xt, wt, bt, stride=pair(stride), padding=pair(pad))
    out.backward(torch.tensor(dout, dtype=torch.float64))
    db = None if bt is None else bt.grad.numpy()
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db


def assert_close(got, want, tol, label=""):
    """Compare (out, dx, dw, db) tuples tensor by tensor; db may be None in both."""
    for name, g, e in zip(("out", "dx", "dw", "db"), got, want, strict=True):
        if e is None:
            assert g is None, f"{label} {name}: expected None (no bias)"
            continue
        assert g.shape == e.shape, f"{label} {name}: shape {g.shape} != {e.shape}"
        err = rel(g, e)
        assert err <= tol, f"{label} {name}: relative error {err:.2e} > {tol:.0e}"


# (N, C, H, W, F, HH, WW), stride, pad, bias
CASES = {
    "3x3-pad1": ((2, 3, 8, 8, 4, 3, 3), 1, 1, True),
    "odd-stride2": ((3, 2, 9, 7, 3, 3, 3), 2, 0, True),
    "odd-stride2-pad1": ((2, 3, 7, 7, 2, 3, 3), 2, 1, True),
    "nonsquare-kernel-input": ((2, 2, 6, 9, 3, 2, 4), 1, (1, 2), True),
    "pair-stride-pad": ((2, 3, 9, 8, 2, 3, 2), (2, 1), (0, 1), True),
    "batch1-no-bias": ((1, 3, 5, 5, 2, 3, 3), 1, 1, False),
    "1x1-kernel": ((2, 4, 5, 6, 3, 1, 1), 1, 0, True),
    "kernel-covers-input": ((2, 2, 4, 5, 3, 6, 5), 1, (1, 0), True),
    "stride-beyond-kernel": ((2, 2, 9, 9, 2, 2, 2), 3, 0, False),
    "pad-beyond-kernel": ((1, 2, 3, 4, 2, 2, 3), 2, 3, True),
}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_torch(backend_name, case):
    shape, stride, pad, bias = case
    x, w, b = make_inputs(shape, bias)
    out, dx, dw, db, dout = run_backend(BACKENDS[backend_name], x, w, b, stride, pad)
    assert_close((out, dx, dw, db), run_torch(x, w, b, stride, pad, dout), TOL, backend_name)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_naive_and_im2col_agree(case):
    shape, stride, pad, bias = case
    x, w, b = make_inputs(shape, bias, seed=2)
    naive = run_backend(naive_conv, x, w, b, stride, pad)[:4]
    fast = run_backend(im2col_conv, x, w, b, stride, pad)[:4]
    assert_close(fast, naive, TOL, "im2col vs naive")


@pytest.mark.parametrize("backend_name", [*BACKENDS, "torch"])
@pytest.mark.parametrize(
    ("shape", "stride", "pad"),
    [
        ((2, 3, 8, 8, 4, 3, 3), 1, 1),  # im2col: row columns, dx folded
        ((2, 4, 9, 7, 5, 5, 5), 1, 4),  # row columns, dx by scatter
        ((3, 2, 9, 7, 3, 3, 3), 2, 0),  # window columns
        ((2, 3, 6, 6, 2, 3, 3), 1, 1),  # dx as a convolution of dout
        ((2, 16, 6, 6, 16, 3, 3), 1, 1),  # Winograd
    ],
)
def test_without_dx_the_other_gradients_are_unchanged(backend_name, shape, stride, pad):
    kernels = TorchKernels("cpu") if backend_name == "torch" else BACKENDS[backend_name]
    if backend_name == "naive" and shape[1] == 16:
        pytest.skip("naive is slow at 16 channels; the loop skips dx the same way")
    x, w, b = make_inputs(shape, seed=11)
    out, cache = kernels.conv2d_forward(x, w, b, stride, pad)
    dout = np.random.default_rng(12).standard_normal(out.shape)
    dx, dw, db = kernels.conv2d_backward(dout, cache)
    none, dw2, db2 = kernels.conv2d_backward(dout, cache, need_dx=False)
    assert dx is not None and none is None
    np.testing.assert_allclose(dw2, dw, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(db2, db, rtol=1e-13, atol=1e-13)


def test_stride_beyond_kernel_leaves_skipped_pixels_without_gradient():
    # 2x2 windows every 3 pixels never touch rows/columns 2, 5, 8: their gradient must be 0.
    x, w, _ = make_inputs((1, 1, 9, 9, 1, 2, 2))
    for name, backend in BACKENDS.items():
        dx = run_backend(backend, x, w, None, 3, 0)[1]
        assert np.all(dx[:, :, 2::3, :] == 0), name
        assert np.all(dx[:, :, :, 2::3] == 0), name


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_float32_stays_float32(backend_name):
    shape, stride, pad = (2, 3, 7, 6, 4, 3, 2), (2, 1), 1
    x, w, b = make_inputs(shape, dtype=np.float32)
    out, dx, dw, db, dout = run_backend(BACKENDS[backend_name], x, w, b, stride, pad)
    for name, arr in zip(("out", "dx", "dw", "db"), (out, dx, dw, db), strict=True):
        assert arr.dtype == np.float32, f"{name} is {arr.dtype}"
    assert_close((out, dx, dw, db), run_torch(x, w, b, stride, pad, dout), 1e-5, backend_name)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_inputs_untouched_and_strided_inputs_accepted(backend_name):
    backend = BACKENDS[backend_name]
    x, w, b = make_inputs((2, 3, 6, 5, 2, 3, 3))
    x_view = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)  # same values, not C-contiguous
    assert not x_view.flags.c_contiguous
    copies = [a.copy() for a in (x_view, w, b)]
    got = run_backend(backend, x_view, w, b, 1, 0)
    for before, after in zip(copies, (x_view, w, b), strict=True):
        np.testing.assert_array_equal(before, after)
    assert_close(got[:4], run_torch(x, w, b, 1, 0, got[4]), TOL, backend_name)


# --- property-based: random tiny shapes, strides and padding -----------------------------------

int_or_pair = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
pad_int_or_pair = st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)))


@st.composite
def conv_problems(draw):
    """(shape, stride, pad, bias, seed) with every output at least 1x1."""
    N, C, F_ = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    HH, WW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, pad = draw(int_or_pair), draw(pad_int_or_pair)
    ph, pw = pair(pad)
    H = draw(st.integers(max(1, HH - 2 * ph), 9))
    W = draw(st.integers(max(1, WW - 2 * pw), 9))
    return (N, C, H, W, F_, HH, WW), stride, pad, draw(st.booleans()), draw(st.integers(0, 2**31))


@given(conv_problems())
def test_property_backends_match_torch_and_each_other(problem):
    shape, stride, pad, bias, seed = problem
    x, w, b = make_inputs(shape, bias, seed)
    naive = run_backend(naive_conv, x, w, b, stride, pad, dout_seed=seed + 1)
    fast = run_backend(im2col_conv, x, w, b, stride, pad, dout_seed=seed + 1)
    want = run_torch(x, w, b, stride, pad, naive[4])
    assert_close(naive[:4], want, TOL, "naive")
    assert_close(fast[:4], want, TOL, "im2col")
    assert_close(fast[:4], naive[:4], TOL, "im2col vs naive")


@given(conv_problems())
def test_property_col2im_is_adjoint_of_im2col(problem):
    # <im2col(x), y> == <x, col2im(y)> for all x, y: col2im routes each column entry back to
    # exactly the pixel im2col took it from, which is what the conv backward relies on.
    (N, C, H, W, _, HH, WW), stride, pad, _, seed = problem
    rng = np.random.default_rng(seed)
    x = pad_spatial(rng.standard_normal((N, C, H, W)), pad)  # big enough for one window
    cols = im2col(x, (HH, WW), stride)
    y = rng.standard_normal(cols.shape)
    back = col2im(y, x.shape, (HH, WW), stride)
    assert back.shape == x.shape
    assert abs(np.vdot(cols, y) - np.vdot(x, back)) <= 1e-12 * (1 + np.abs(cols * y).sum())


def test_im2col_layout():
    N, C, H, W, HH, WW, (sh, sw) = 2, 3, 7, 6, 3, 2, (2, 1)
    x = np.arange(N * C * H * W, dtype=np.float32).reshape(N, C, H, W)
    cols = im2col(x, (HH, WW), (sh, sw))
    Ho, Wo = 1 + (H - HH) // sh, 1 + (W - WW) // sw
    assert cols.shape == (C * HH * WW, N * Ho * Wo)
    assert cols.dtype == np.float32 and cols.flags.c_contiguous
    assert windows(x, (HH, WW), (sh, sw)).shape == (N, C, Ho, Wo, HH, WW)
    for n, c, i, j, kh, kw in np.ndindex(N, C, Ho, Wo, HH, WW):
        got = cols[(c * HH + kh) * WW + kw, (n * Ho + i) * Wo + j]
        assert got == x[n, c, i * sh + kh, j * sw + kw]


# --- numeric gradients -------------------------------------------------------------------------


def numeric_grad(f, a, h=1e-6):
    """Centred differences of the scalar f() with respect to every entry of a (in place)."""
    return numeric_gradient(lambda _: f(), a, h)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_numeric_gradient(backend_name):
    backend = BACKENDS[backend_name]
    x, w, b = make_inputs((2, 2, 5, 4, 3, 3, 2), seed=3)
    stride, pad = (2, 1), (1, 0)
    _, dx, dw, db, dout = run_backend(backend, x, w, b, stride, pad)

    def loss():  # its gradient w.r.t. out is dout
        return float(np.sum(backend.conv2d_forward(x, w, b, stride, pad)[0] * dout))

    for name, analytic, arr in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
        err = rel(analytic, numeric_grad(loss, arr))
        assert err < 1e-8, f"{backend_name} {name}: relative error {err:.2e} (h=1e-6)"


# --- shape errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "pad", "expect"),
    [
        ((1, 1, 2, 2), (1, 1, 3, 3), 1, 0, ["(1, 1, 2, 2)", "3x3", "0x0", "< 1"]),
        ((2, 3, 8, 2), (4, 3, 3, 5), 1, (1, 1), ["(2, 3, 8, 2)", "3x5", "8x0", "< 1"]),
        ((2, 3, 5, 5), (4, 2, 3, 3), 1, 0, ["(2, 3, 5, 5)", "(4, 2, 3, 3)", "channels"]),
    ],
    ids=["Ho<1", "Wo<1", "channel-mismatch"],
)
def test_shape_errors_name_the_shapes(x_shape, w_shape, stride, pad, expect):
    x, w, b = np.zeros(x_shape), np.zeros(w_shape), np.zeros(w_shape[0])
    messages = {}
    for name, backend in BACKENDS.items():
        with pytest.raises(ShapeError) as info:
            backend.conv2d_forward(x, w, b, stride, pad)
        messages[name] = str(info.value)
        for part in expect:
            assert part in messages[name], f"{name}: {part!r} not in {messages[name]!r}"
    assert messages["naive"] == messages["im2col"]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_bias_shape_error(backend_name):
    with pytest.raises(ShapeError, match=r"b must be \(4,\)"):
        BACKENDS[backend_name].conv2d_forward(
            np.zeros((1, 2, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(3)
        )


# --- groups and dilation -----------------------------------------------------------------------


def run_grouped(backend, x, w, b, stride, pad, dilation, groups, dout):
    out, cache = backend.conv2d_forward(x, w, b, stride, pad, dilation, groups)
    return (out, *backend.conv2d_backward(dout, cache))


@st.composite
def grouped_problems(draw):
    """(x, w, b, stride, pad, dilation, groups, dout) with groups in {1, 2, C} and every
    output at least 1x1; float64."""
    groups = draw(st.sampled_from([1, 2, "C"]))
    per_group = draw(st.integers(1, 3))
    C = draw(st.integers(1, 4)) if groups == "C" else per_group * groups
    groups = C if groups == "C" else groups
    F_ = groups * draw(st.integers(1, 2))
    HH, WW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, pad = draw(int_or_pair), draw(pad_int_or_pair)
    dilation = draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 3), st.integers(1, 2))))
    (ph, pw), (dh, dw) = pair(pad), pair(dilation)
    H = draw(st.integers(max(1, dh * (HH - 1) + 1 - 2 * ph), 9))
    W = draw(st.integers(max(1, dw * (WW - 1) + 1 - 2 * pw), 10))
    N = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F_, C // groups, HH, WW))
    b = rng.standard_normal(F_) if draw(st.booleans()) else None
    Ho = 1 + (H + 2 * ph - dh * (HH - 1) - 1) // pair(stride)[0]
    Wo = 1 + (W + 2 * pw - dw * (WW - 1) - 1) // pair(stride)[1]
    dout = rng.standard_normal((N, F_, Ho, Wo))
    return x, w, b, stride, pad, dilation, groups, dout


def torch_grouped(x, w, b, stride, pad, dilation, groups, dout):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    out = torch_conv2d(xt, wt, bt, pair(stride), pair(pad), pair(dilation), groups)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if b is None else bt.grad


@given(grouped_problems())
def test_property_groups_and_dilation_match_torch_on_every_backend(problem):
    want = torch_grouped(*problem)
    want = (*want[:3], None if want[3] is None else want[3].numpy())
    got = {name: run_grouped(backend, *problem) for name, backend in BACKENDS.items()}
    got["torch"] = run_grouped(TorchKernels(), *problem)
    for name, result in got.items():
        assert_close(result, want, TOL, name)
    assert_close(got["im2col"], got["naive"], TOL, "im2col vs naive")


@pytest.mark.parametrize(
    ("shape", "groups", "dilation", "stride"),
    [
        ((16, 32, 12, 12, 32), 32, 1, 1),  # depthwise, row columns, every core
        ((8, 64, 10, 9, 128), 32, 1, 1),  # ResNeXt-like groups of 2 -> 4
        ((8, 24, 13, 11, 48), 24, 2, 2),  # depthwise x2, dilated, strided
        ((6, 16, 14, 14, 32), 4, (2, 3), 1),  # dilated window columns
    ],
    ids=["depthwise", "grouped", "depthwise-dilated-stride2", "dilated"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grouped_batches_match_torch(shape, groups, dilation, stride, dtype):
    # Batches large enough for chunks on two workers, both column layouts, float32 as well.
    N, C, H, W, F_ = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F_, C // groups, 3, 3)).astype(dtype)
    b = rng.standard_normal(F_).astype(dtype)
    out, cache = im2col_conv.conv2d_forward(
        x, w, b, stride, 1, dilation, groups, workers=im2col_conv.Workers(2)
    )
    dout = rng.standard_normal(out.shape).astype(dtype)
    got = (out, *im2col_conv.conv2d_backward(dout, cache, workers=im2col_conv.Workers(2)))
    want = torch_grouped(
        x.astype(np.float64),
        w.astype(np.float64),
        b.astype(np.float64),
        stride,
        1,
        dilation,
        groups,
        dout.astype(np.float64),
    )
    want = (*want[:3], want[3].numpy())
    assert all(g.dtype == dtype for g in got)
    assert_close(got, want, TOL if dtype == np.float64 else 1e-6, str(dtype))


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "dilation", "groups", "expect"),
    [
        ((1, 6, 8, 8), (6, 2, 3, 3), 1, 4, "groups (4) must be a positive divisor"),
        ((1, 6, 8, 8), (5, 2, 3, 3), 1, 3, "F=5 filters"),
        ((1, 6, 8, 8), (6, 3, 3, 3), 1, 3, "expects 3 per group x 3 groups"),
        ((1, 2, 4, 4), (2, 2, 3, 3), 2, 1, "dilation (2, 2) gives output 0x0"),
        ((1, 2, 4, 4), (2, 2, 3, 3), 0, 1, "dilation must be >= 1"),
    ],
    ids=[
        "groups-not-divisor",
        "filters-not-multiple",
        "channels-per-group",
        "dilated-too-big",
        "dilation-0",
    ],
)
def test_group_and_dilation_errors_read_alike_on_every_backend(
    x_shape, w_shape, dilation, groups, expect
):
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    messages = set()
    for backend in (*BACKENDS.values(), TorchKernels()):
        with pytest.raises(ShapeError) as info:
            backend.conv2d_forward(x, w, None, 1, 0, dilation, groups)
        messages.add(str(info.value))
    assert len(messages) == 1 and expect in messages.pop()
