"""Max, average and adaptive average pooling on the naive and im2col backends (and the torch
kernel set), with PyTorch (float64) as the oracle.

Relative error throughout is ``||a - b|| / max(||a|| + ||b||, 1e-12)`` (cnnlab.compare).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnnlab.backends import BACKENDS as KERNEL_SETS
from cnnlab.compare import rel_error
from cnnlab.errors import ShapeError
from cnnlab.gradcheck.numeric import numeric_gradient
from cnnlab.kernels.im2col import pool as im2col_pool
from cnnlab.kernels.naive import pool as naive_pool

BACKENDS = {"naive": naive_pool, "im2col": im2col_pool}
KINDS = ("max", "avg")
TOL = 1e-10

# (x shape, kernel, stride, pad)
CASES = [
    pytest.param((2, 3, 8, 8), 2, 2, 0, id="2x2s2"),
    pytest.param((2, 3, 7, 9), 2, None, 0, id="odd-leftover-default-stride"),
    pytest.param((2, 2, 9, 7), 3, 2, 1, id="overlap-3x3s2p1"),
    pytest.param((1, 3, 5, 5), 3, 1, 1, id="3x3s1p1-batch1"),
    pytest.param((2, 2, 10, 7), (3, 2), (2, 1), (1, 0), id="nonsquare-kernel"),
    pytest.param((2, 3, 6, 11), 2, 3, 0, id="kernel<stride"),
    pytest.param((1, 2, 8, 6), 4, 2, 2, id="4x4s2p2"),
    pytest.param((2, 1, 5, 6), (1, 3), (2, 1), (0, 1), id="1x3-strided-rows"),
    pytest.param((3, 2, 5, 5), 5, 1, 0, id="whole-image"),
]


def forward(backend, kind, x, kernel, stride, pad, ties="first", ceil_mode=False):
    mod = BACKENDS[backend]
    if kind == "max":
        return mod.maxpool2d_forward(x, kernel, stride, pad, ties=ties, ceil_mode=ceil_mode)
    return mod.avgpool2d_forward(x, kernel, stride, pad, ceil_mode=ceil_mode)


def backward(backend, kind, dout, cache):
    mod = BACKENDS[backend]
    fn = mod.maxpool2d_backward if kind == "max" else mod.avgpool2d_backward
    return fn(dout, cache)


def run(backend, kind, x, dout, kernel, stride, pad, ties="first", ceil_mode=False):
    out, cache = forward(backend, kind, x, kernel, stride, pad, ties, ceil_mode)
    return out, backward(backend, kind, dout, cache)


def torch_pool(kind, x, dout, kernel, stride, pad, ceil_mode=False):
    """out and dx from torch in float64 (autograd)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    if kind == "max":
        out = torch.nn.functional.max_pool2d(xt, kernel, stride, pad, ceil_mode=ceil_mode)
    else:
        out = torch.nn.functional.avg_pool2d(
            xt, kernel, stride, pad, ceil_mode=ceil_mode, count_include_pad=True
        )
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), xt.grad.numpy()


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def pooled_size(n, k, s, p, ceil_mode):
    """PyTorch's output length along one axis, written out independently of the kernels."""
    if not ceil_mode:
        return 1 + (n + 2 * p - k) // s
    out = 1 + math.ceil((n + 2 * p - k) / s)
    return out - 1 if (out - 1) * s >= n + p else out  # no window may start in the padding


def out_shape(x_shape, kernel, stride, pad, ceil_mode=False):
    (kh, kw), (ph, pw) = pair(kernel), pair(pad)
    sh, sw = pair(kernel if stride is None else stride)
    N, C, H, W = x_shape
    return (N, C, pooled_size(H, kh, sh, ph, ceil_mode), pooled_size(W, kw, sw, pw, ceil_mode))


def random_inputs(rng, x_shape, kernel, stride, pad, ties=False, ceil_mode=False):
    """x and dout in float64; with ``ties`` x holds small integers, so most windows tie."""
    if ties:
        x = rng.integers(0, 3, size=x_shape).astype(np.float64)
    else:
        x = rng.standard_normal(x_shape)
    dout = rng.standard_normal(out_shape(x_shape, kernel, stride, pad, ceil_mode))
    return x, dout


# --- against torch and each other, fixed cases ---------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "pad"), CASES)
def test_matches_torch(backend, kind, x_shape, kernel, stride, pad):
    rng = np.random.default_rng(0)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad)
    out, dx = run(backend, kind, x, dout, kernel, stride, pad)
    out_t, dx_t = torch_pool(kind, x, dout, kernel, stride, pad)
    assert out.shape == out_t.shape
    assert dx.shape == x.shape
    assert rel_error(out, out_t) <= TOL
    assert rel_error(dx, dx_t) <= TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "pad"), CASES)
def test_ties_first_matches_torch(backend, x_shape, kernel, stride, pad):
    rng = np.random.default_rng(1)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad, ties=True)
    out, dx = run(backend, "max", x, dout, kernel, stride, pad, ties="first")
    out_t, dx_t = torch_pool("max", x, dout, kernel, stride, pad)
    np.testing.assert_array_equal(out, out_t)
    assert rel_error(dx, dx_t) <= TOL


@pytest.mark.parametrize("ties", ["first", "all"])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "pad"), CASES)
def test_backends_agree_with_ties(ties, x_shape, kernel, stride, pad):
    rng = np.random.default_rng(2)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad, ties=True)
    out_n, dx_n = run("naive", "max", x, dout, kernel, stride, pad, ties=ties)
    out_i, dx_i = run("im2col", "max", x, dout, kernel, stride, pad, ties=ties)
    assert rel_error(out_n, out_i) <= TOL
    assert rel_error(dx_n, dx_i) <= TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_float32_stays_float32(backend, kind):
    rng = np.random.default_rng(3)
    x, dout = random_inputs(rng, (2, 3, 9, 7), 3, 2, 1)
    out32, dx32 = run(backend, kind, x.astype(np.float32), dout.astype(np.float32), 3, 2, 1)
    out64, dx64 = run(backend, kind, x, dout, 3, 2, 1)
    assert out32.dtype == np.float32
    assert dx32.dtype == np.float32
    assert out64.dtype == np.float64
    assert dx64.dtype == np.float64
    assert rel_error(out32.astype(np.float64), out64) < 1e-6
    assert rel_error(dx32.astype(np.float64), dx64) < 1e-6


# --- property-based: random geometry --------------------------------------------------------


@st.composite
def pool_setups(draw):
    """Tiny (x_shape, kernel, stride, pad, seed) with an output of at least 1x1.

    Square values are sometimes passed as plain ints and stride sometimes left to default, so
    both argument forms are covered.
    """
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H = draw(st.integers(max(1, kh - 2 * ph), 10))
    W = draw(st.integers(max(1, kw - 2 * pw), 10))
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W)

    def maybe_int(a, b):
        return a if a == b and draw(st.booleans()) else (a, b)

    kernel = maybe_int(kh, kw)
    stride = None if draw(st.booleans()) and (sh, sw) == (kh, kw) else maybe_int(sh, sw)
    pad = maybe_int(ph, pw)
    return x_shape, kernel, stride, pad, draw(st.integers(0, 2**32 - 1))


@given(pool_setups())
def test_property_avg_matches_torch(setup):
    x_shape, kernel, stride, pad, seed = setup
    x, dout = random_inputs(np.random.default_rng(seed), x_shape, kernel, stride, pad)
    out_t, dx_t = torch_pool("avg", x, dout, kernel, stride, pad)
    for backend in BACKENDS:
        out, dx = run(backend, "avg", x, dout, kernel, stride, pad)
        assert rel_error(out, out_t) <= TOL
        assert rel_error(dx, dx_t) <= TOL


@given(pool_setups())
def test_property_max_matches_torch(setup):
    # Continuous values: no ties, so both rules must give torch's gradient.
    x_shape, kernel, stride, pad, seed = setup
    x, dout = random_inputs(np.random.default_rng(seed), x_shape, kernel, stride, pad)
    out_t, dx_t = torch_pool("max", x, dout, kernel, stride, pad)
    for backend in BACKENDS:
        for ties in ("first", "all"):
            out, dx = run(backend, "max", x, dout, kernel, stride, pad, ties=ties)
            np.testing.assert_array_equal(out, out_t)
            assert rel_error(dx, dx_t) <= TOL


@given(pool_setups())
def test_property_max_ties(setup):
    x_shape, kernel, stride, pad, seed = setup
    x, dout = random_inputs(np.random.default_rng(seed), x_shape, kernel, stride, pad, ties=True)
    _, dx_t = torch_pool("max", x, dout, kernel, stride, pad)
    _, dx_all_naive = run("naive", "max", x, dout, kernel, stride, pad, ties="all")
    _, dx_all_im2col = run("im2col", "max", x, dout, kernel, stride, pad, ties="all")
    assert rel_error(dx_all_naive, dx_all_im2col) <= TOL
    for backend in BACKENDS:
        _, dx = run(backend, "max", x, dout, kernel, stride, pad, ties="first")
        assert rel_error(dx, dx_t) <= TOL


# --- tie rules, hand-computed ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_all_equal_2x2(backend):
    x = np.full((1, 1, 4, 4), 7.0)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    _, dx_first = run(backend, "max", x, dout, 2, 2, 0, ties="first")
    _, dx_all = run(backend, "max", x, dout, 2, 2, 0, ties="all")
    first = np.array(
        [
            [1.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [3.0, 0.0, 4.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    everywhere = np.kron(dout[0, 0], np.ones((2, 2)))
    np.testing.assert_array_equal(dx_first[0, 0], first)
    np.testing.assert_array_equal(dx_all[0, 0], everywhere)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ties", ["first", "all"])
def test_shared_maximum_accumulates(backend, ties):
    # All four 2x2 windows (stride 1) of a 3x3 input share the centre as their unique maximum.
    x = np.array([[[[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]]])
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    _, dx = run(backend, "max", x, dout, 2, 1, 0, ties=ties)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 10.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlapping_windows_with_ties(backend):
    # 1x3 windows at stride 2 overlap in column 2; every element ties.
    x = np.ones((1, 1, 1, 5))
    dout = np.array([[[[10.0, 1.0]]]])
    _, dx_first = run(backend, "max", x, dout, (1, 3), (1, 2), 0, ties="first")
    _, dx_all = run(backend, "max", x, dout, (1, 3), (1, 2), 0, ties="all")
    np.testing.assert_array_equal(dx_first[0, 0, 0], [10.0, 0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(dx_all[0, 0, 0], [10.0, 10.0, 11.0, 1.0, 1.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_with_padding_never_pick_padding(backend):
    # 2x2 windows at stride 1 over a zero-padded-by-one 2x2 image of equal values: out is 3x3
    # and window (i, j) holds the real rows i-1..i and columns j-1..j.
    x = np.zeros((1, 1, 2, 2))
    dout = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    _, dx_first = run(backend, "max", x, dout, 2, 1, 1, ties="first")
    _, dx_all = run(backend, "max", x, dout, 2, 1, 1, ties="all")
    np.testing.assert_array_equal(dx_first[0, 0], [[12.0, 9.0], [15.0, 9.0]])
    np.testing.assert_array_equal(dx_all[0, 0], [[12.0, 16.0], [24.0, 28.0]])
    np.testing.assert_array_equal(dx_first, torch_pool("max", x, dout, 2, 1, 1)[1])


# --- numeric gradient check -----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "pad"),
    [
        pytest.param((2, 2, 5, 6), 3, 2, 1, id="overlap-3x3s2p1"),
        pytest.param((1, 2, 5, 7), (2, 3), (2, 2), (1, 1), id="nonsquare"),
    ],
)
def test_numeric_gradient(backend, kind, x_shape, kernel, stride, pad):
    h = 1e-6
    rng = np.random.default_rng(4)
    # A permutation of values 0.01 apart: no near-ties, so the max is stable under +-h.
    size = int(np.prod(x_shape))
    x = (rng.permutation(size) - size / 2).reshape(x_shape) * 0.01
    dout = rng.standard_normal(out_shape(x_shape, kernel, stride, pad))

    def loss(x_):
        return float(np.sum(forward(backend, kind, x_, kernel, stride, pad)[0] * dout))

    _, cache = forward(backend, kind, x, kernel, stride, pad)
    dx = backward(backend, kind, dout, cache)
    assert rel_error(dx, numeric_gradient(loss, x, h)) < 1e-8


# --- errors -------------------------------------------------------------------------------


def _forward_error(backend, kind, x_shape, kernel, stride=None, pad=0, ties="first"):
    with pytest.raises(ValueError) as info:
        forward(backend, kind, np.zeros(x_shape), kernel, stride, pad, ties)
    return info.value


@pytest.mark.parametrize("kind", KINDS)
def test_output_smaller_than_one_is_shape_error(kind):
    messages = set()
    for backend in BACKENDS:
        err = _forward_error(backend, kind, (1, 1, 2, 3), 3)
        assert isinstance(err, ShapeError)
        assert f"{kind}pool2d" in str(err)
        assert "(1, 1, 2, 3)" in str(err)
        messages.add(str(err))
    assert len(messages) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_pad_more_than_half_kernel_is_shape_error(kind):
    messages = set()
    for backend in BACKENDS:
        err = _forward_error(backend, kind, (1, 1, 8, 8), 2, pad=2)
        assert isinstance(err, ShapeError)
        assert "pad (2, 2)" in str(err)
        assert "kernel (2, 2)" in str(err)
        messages.add(str(err))
    assert len(messages) == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_x_not_4d_is_shape_error(backend, kind):
    err = _forward_error(backend, kind, (3, 8, 8), 2)
    assert isinstance(err, ShapeError)
    assert "(3, 8, 8)" in str(err)


def test_invalid_ties_is_a_value_error_naming_choices():
    messages = set()
    for backend in BACKENDS:
        err = _forward_error(backend, "max", (1, 1, 4, 4), 2, ties="last")
        assert not isinstance(err, ShapeError)
        assert "first, all" in str(err)
        assert "'last'" in str(err)
        messages.add(str(err))
    assert len(messages) == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_dout_of_wrong_shape_is_shape_error(backend, kind):
    _, cache = forward(backend, kind, np.zeros((1, 2, 4, 4)), 2, None, 0)
    with pytest.raises(ShapeError, match=r"\(1, 2, 3, 3\)"):
        backward(backend, kind, np.zeros((1, 2, 3, 3)), cache)


# --- ceil_mode ------------------------------------------------------------------------------

# (x shape, kernel, stride, pad): each has windows that run past the padded input, or a last
# window that ceil mode drops because it would start in the bottom/right padding.
CEIL_CASES = [
    pytest.param((2, 3, 7, 7), 2, 2, 0, id="2x2s2-odd"),
    pytest.param((2, 2, 8, 6), 3, 2, 0, id="3x3s2-nonsquare"),
    pytest.param((2, 2, 6, 9), 3, 2, 1, id="3x3s2p1"),
    pytest.param((1, 2, 5, 5), 2, 2, 1, id="last-window-dropped"),
    pytest.param((2, 1, 7, 8), 2, 3, 0, id="kernel<stride"),
    pytest.param((1, 2, 10, 7), (3, 2), (2, 3), (1, 1), id="nonsquare-kernel"),
    pytest.param((1, 2, 2, 3), 3, 2, 0, id="kernel-larger-than-input"),
]


def torch_backend():
    return KERNEL_SETS["torch"].kernels()


def test_ceil_cases_exercise_what_they_say():
    """The sizes differ from floor mode's (or a window is dropped) in every case."""
    for case in CEIL_CASES:
        x_shape, kernel, stride, pad = case.values
        floor = out_shape(x_shape, kernel, stride, pad)
        ceil = out_shape(x_shape, kernel, stride, pad, ceil_mode=True)
        dropped = case.id == "last-window-dropped"
        assert (ceil == floor) == dropped, case.id
    assert pooled_size(5, 2, 2, 1, True) == 3  # 4 windows before the last one is dropped
    assert pooled_size(2, 3, 2, 0, True) == 1  # floor mode gives 0: a ShapeError there


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "pad"), CEIL_CASES)
def test_ceil_mode_matches_torch(backend, kind, x_shape, kernel, stride, pad):
    rng = np.random.default_rng(5)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad, ceil_mode=True)
    out, dx = run(backend, kind, x, dout, kernel, stride, pad, ceil_mode=True)
    out_t, dx_t = torch_pool(kind, x, dout, kernel, stride, pad, ceil_mode=True)
    assert out.shape == out_t.shape == dout.shape
    assert rel_error(out, out_t) <= TOL
    assert rel_error(dx, dx_t) <= TOL


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "pad"), CEIL_CASES)
def test_ceil_mode_on_the_torch_kernel_set(x_shape, kernel, stride, pad):
    kern = torch_backend()
    rng = np.random.default_rng(6)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad, ceil_mode=True)
    for kind in KINDS:
        out_t, dx_t = torch_pool(kind, x, dout, kernel, stride, pad, ceil_mode=True)
        variants = [{"ties": "first"}, {"ties": "all"}] if kind == "max" else [{}]
        for extra in variants:
            fwd = getattr(kern, f"{kind}pool2d_forward")
            out, cache = fwd(x, kernel, stride, pad, ceil_mode=True, **extra)
            dx = getattr(kern, f"{kind}pool2d_backward")(dout, cache)
            assert rel_error(out, out_t) <= TOL
            assert rel_error(dx, dx_t) <= TOL, extra


@pytest.mark.parametrize("ties", ["first", "all"])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "pad"), CEIL_CASES)
def test_ceil_mode_backends_agree_with_ties(ties, x_shape, kernel, stride, pad):
    rng = np.random.default_rng(7)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad, ties=True, ceil_mode=True)
    results = [
        run(backend, "max", x, dout, kernel, stride, pad, ties=ties, ceil_mode=True)
        for backend in BACKENDS
    ]
    kern = torch_backend()
    out, cache = kern.maxpool2d_forward(x, kernel, stride, pad, ties, ceil_mode=True)
    results.append((out, kern.maxpool2d_backward(dout, cache)))
    for out, dx in results[1:]:
        assert rel_error(out, results[0][0]) <= TOL
        assert rel_error(dx, results[0][1]) <= TOL
    if ties == "first":
        assert (
            rel_error(results[0][1], torch_pool("max", x, dout, kernel, stride, pad, True)[1])
            <= TOL
        )


@given(pool_setups())
def test_property_ceil_mode_matches_torch(setup):
    x_shape, kernel, stride, pad, seed = setup
    rng = np.random.default_rng(seed)
    x, dout = random_inputs(rng, x_shape, kernel, stride, pad, ceil_mode=True)
    for kind in KINDS:
        out_t, dx_t = torch_pool(kind, x, dout, kernel, stride, pad, ceil_mode=True)
        for backend in BACKENDS:
            out, dx = run(backend, kind, x, dout, kernel, stride, pad, ceil_mode=True)
            assert rel_error(out, out_t) <= TOL
            assert rel_error(dx, dx_t) <= TOL


@pytest.mark.parametrize("backend", [*BACKENDS, "torch"])
def test_ceil_mode_average_counts_padding_but_not_the_overhang(backend):
    # 3x3 windows, stride 2, pad 1 on a 4x4 image of ones: 3x3 outputs. Along each axis the
    # windows hold (real elements, divisor) = (2, 3), (3, 3), (1, 2): the last one covers the
    # last real row and one padding row, and runs one row past the padded input.
    x = np.ones((1, 1, 4, 4))
    real, count = np.array([2.0, 3.0, 1.0]), np.array([3.0, 3.0, 2.0])
    expected = np.outer(real, real) / np.outer(count, count)
    if backend == "torch":
        out, cache = torch_backend().avgpool2d_forward(x, 3, 2, 1, ceil_mode=True)
        dx = torch_backend().avgpool2d_backward(np.ones_like(out), cache)
    else:
        out, dx = run(backend, "avg", x, np.ones((1, 1, 3, 3)), 3, 2, 1, ceil_mode=True)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-15)
    # dx: each element gets 1/divisor from every window holding it: 1/3 + 1/3 for row 1.
    per_axis = np.array([1 / 3, 1 / 3 + 1 / 3, 1 / 3, 1 / 3 + 1 / 2])
    np.testing.assert_allclose(dx[0, 0], np.outer(per_axis, per_axis), rtol=1e-15)


@pytest.mark.parametrize("backend", [*BACKENDS, "torch"])
def test_ceil_mode_max_never_routes_to_the_overhang(backend):
    # 2x2 windows, stride 2 on a 3x3 image of equal values: the last row and column of windows
    # hold only the image's last row / column (and the corner window one element).
    x = np.full((1, 1, 3, 3), -5.0)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = {}
    for ties in ("first", "all"):
        if backend == "torch":
            out, cache = torch_backend().maxpool2d_forward(x, 2, 2, 0, ties, ceil_mode=True)
            dx[ties] = torch_backend().maxpool2d_backward(dout, cache)
        else:
            out, dx[ties] = run(backend, "max", x, dout, 2, 2, 0, ties=ties, ceil_mode=True)
        np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), -5.0))
    np.testing.assert_array_equal(dx["first"][0, 0], [[1.0, 0, 2.0], [0, 0, 0], [3.0, 0, 4.0]])
    np.testing.assert_array_equal(dx["all"][0, 0], [[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [3, 3, 4]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_ceil_mode_numeric_gradient(backend, kind):
    x_shape, kernel, stride, pad = (1, 2, 6, 7), (3, 2), 2, (1, 0)
    rng = np.random.default_rng(8)
    size = int(np.prod(x_shape))
    x = (rng.permutation(size) - size / 2).reshape(x_shape) * 0.01
    dout = rng.standard_normal(out_shape(x_shape, kernel, stride, pad, ceil_mode=True))

    def loss(x_):
        out, _ = forward(backend, kind, x_, kernel, stride, pad, ceil_mode=True)
        return float(np.sum(out * dout))

    _, cache = forward(backend, kind, x, kernel, stride, pad, ceil_mode=True)
    dx = backward(backend, kind, dout, cache)
    assert rel_error(dx, numeric_gradient(loss, x, 1e-6)) < 1e-8


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_ceil_mode_float32_stays_float32(backend, kind):
    rng = np.random.default_rng(9)
    x, dout = random_inputs(rng, (2, 3, 8, 7), 3, 2, 1, ceil_mode=True)
    out32, dx32 = run(
        backend, kind, x.astype(np.float32), dout.astype(np.float32), 3, 2, 1, ceil_mode=True
    )
    out64, dx64 = run(backend, kind, x, dout, 3, 2, 1, ceil_mode=True)
    assert out32.dtype == dx32.dtype == np.float32
    assert rel_error(out32.astype(np.float64), out64) < 1e-6
    assert rel_error(dx32.astype(np.float64), dx64) < 1e-6


def _errors_on_every_backend(call):
    """The error each of naive, im2col and torch raises for ``call(kernels)``."""
    errors = []
    for name in ("naive", "im2col", "torch"):
        with pytest.raises(ShapeError) as info:
            call(KERNEL_SETS[name].kernels())
        errors.append(str(info.value))
    return errors


@pytest.mark.parametrize("kind", KINDS)
def test_ceil_mode_output_smaller_than_one_is_the_same_shape_error(kind):
    # 4x4 windows, stride 1 on a 1x1 image: 1 + ceil(-3 / 1) = -2.
    errors = _errors_on_every_backend(
        lambda k: getattr(k, f"{kind}pool2d_forward")(np.zeros((1, 1, 1, 1)), 4, 1, ceil_mode=True)
    )
    assert len(set(errors)) == 1
    assert f"{kind}pool2d" in errors[0] and "(1, 1, 1, 1)" in errors[0] and "(< 1)" in errors[0]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_feature_map_is_the_same_shape_error(kind, ceil_mode):
    # Padding half the kernel would otherwise give a window of padding alone.
    errors = _errors_on_every_backend(
        lambda k: getattr(k, f"{kind}pool2d_forward")(
            np.zeros((1, 1, 0, 4)), 2, 2, 1, ceil_mode=ceil_mode
        )
    )
    assert len(set(errors)) == 1
    assert "empty feature map" in errors[0] and "(1, 1, 0, 4)" in errors[0]


# --- adaptive average pooling -----------------------------------------------------------------

# (x shape, output): windows that tile, overlap, differ in size, or repeat input elements.
ADAPTIVE_CASES = [
    pytest.param((2, 3, 6, 4), (3, 2), id="tiling"),
    pytest.param((2, 3, 7, 5), (3, 2), id="overlapping-7x5-to-3x2"),
    pytest.param((1, 2, 5, 7), 4, id="uneven-5x7-to-4x4"),
    pytest.param((2, 2, 2, 3), (4, 4), id="larger-than-input"),
    pytest.param((2, 2, 16, 16), 7, id="vgg-16x16-to-7x7"),
    pytest.param((1, 2, 5, 7), (5, 7), id="identity"),
    pytest.param((2, 1, 9, 1), (2, 3), id="one-column"),
    pytest.param((2, 2, 3, 4), 1, id="global"),
]
ADAPTIVE_BACKENDS = ("naive", "im2col", "torch")


def torch_adaptive(x, dout, output):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.adaptive_avg_pool2d(xt, output)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), xt.grad.numpy()


def run_adaptive(backend, x, dout, output):
    kern = KERNEL_SETS[backend].kernels()
    out, cache = kern.adaptive_avgpool2d_forward(x, output)
    return out, kern.adaptive_avgpool2d_backward(dout, cache)


@pytest.mark.parametrize("backend", ADAPTIVE_BACKENDS)
@pytest.mark.parametrize(("x_shape", "output"), ADAPTIVE_CASES)
def test_adaptive_matches_torch(backend, x_shape, output):
    rng = np.random.default_rng(10)
    x = rng.standard_normal(x_shape)
    dout = rng.standard_normal((*x_shape[:2], *pair(output)))
    out, dx = run_adaptive(backend, x, dout, output)
    out_t, dx_t = torch_adaptive(x, dout, output)
    assert out.shape == out_t.shape
    assert dx.shape == x.shape
    assert rel_error(out, out_t) <= TOL
    assert rel_error(dx, dx_t) <= TOL


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 14),
    st.integers(1, 14),
    st.integers(0, 2**32 - 1),
)
def test_property_adaptive_matches_torch(H, W, Ho, Wo, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, H, W))
    dout = rng.standard_normal((2, 2, Ho, Wo))
    out_t, dx_t = torch_adaptive(x, dout, (Ho, Wo))
    for backend in ("naive", "im2col"):
        out, dx = run_adaptive(backend, x, dout, (Ho, Wo))
        assert rel_error(out, out_t) <= TOL
        assert rel_error(dx, dx_t) <= TOL


@pytest.mark.parametrize("backend", ADAPTIVE_BACKENDS)
def test_adaptive_windows_by_hand(backend):
    # 5 columns to 3: windows [0, 2), [1, 4), [3, 5) overlap in columns 1 and 3.
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    out, dx = run_adaptive(backend, x, np.array([[[[2.0, 3.0, 4.0]]]]), (1, 3))
    np.testing.assert_allclose(out[0, 0, 0], [0.5, 2.0, 3.5], rtol=1e-15)
    np.testing.assert_allclose(dx[0, 0, 0], [1.0, 1.0 + 1.0, 1.0, 1.0 + 2.0, 2.0], rtol=1e-15)


@pytest.mark.parametrize("backend", ADAPTIVE_BACKENDS)
def test_adaptive_to_the_input_size_is_the_identity(backend):
    x = np.random.default_rng(11).standard_normal((2, 3, 5, 7))
    out, dx = run_adaptive(backend, x, x, (5, 7))
    np.testing.assert_allclose(out, x, rtol=1e-15)
    np.testing.assert_allclose(dx, x, rtol=1e-15)


@pytest.mark.parametrize("backend", ("naive", "im2col"))
def test_adaptive_numeric_gradient(backend):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 2, 7, 5))
    dout = rng.standard_normal((1, 2, 3, 4))
    kern = KERNEL_SETS[backend].kernels()

    def loss(x_):
        return float(np.sum(kern.adaptive_avgpool2d_forward(x_, (3, 4))[0] * dout))

    _, cache = kern.adaptive_avgpool2d_forward(x, (3, 4))
    dx = kern.adaptive_avgpool2d_backward(dout, cache)
    assert rel_error(dx, numeric_gradient(loss, x, 1e-6)) < 1e-8


@pytest.mark.parametrize("backend", ADAPTIVE_BACKENDS)
def test_adaptive_float32_stays_float32(backend):
    rng = np.random.default_rng(13)
    x, dout = rng.standard_normal((2, 3, 7, 5)), rng.standard_normal((2, 3, 3, 2))
    out32, dx32 = run_adaptive(backend, x.astype(np.float32), dout.astype(np.float32), (3, 2))
    out64, dx64 = run_adaptive(backend, x, dout, (3, 2))
    assert out32.dtype == dx32.dtype == np.float32
    assert rel_error(out32.astype(np.float64), out64) < 1e-6
    assert rel_error(dx32.astype(np.float64), dx64) < 1e-6


@pytest.mark.parametrize(
    ("x_shape", "output", "words"),
    [
        pytest.param(
            (1, 2, 5, 5),
            0,
            "adaptive_avgpool2d: output size must be at least 1x1, got 0",
            id="zero",
        ),
        pytest.param((1, 2, 5, 5), (3, -1), "at least 1x1, got (3, -1)", id="negative"),
        pytest.param((1, 2, 5, 5), 1.5, "output must be an int or a pair of ints", id="fraction"),
        pytest.param(
            (2, 5, 5),
            2,
            "adaptive_avgpool2d: x must be (N, C, H, W), got shape (2, 5, 5)",
            id="not-4d",
        ),
        pytest.param((1, 2, 0, 5), 2, "(1, 2, 0, 5) has an empty feature map", id="empty"),
    ],
)
def test_adaptive_bad_arguments_are_the_same_shape_error(x_shape, output, words):
    errors = _errors_on_every_backend(
        lambda k: k.adaptive_avgpool2d_forward(np.zeros(x_shape), output)
    )
    assert len(set(errors)) == 1
    assert words in errors[0]
