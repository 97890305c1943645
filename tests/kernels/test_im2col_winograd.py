"""The im2col conv's Winograd path for 3x3 stride-1 float64 layers: same numbers as torch, and
the rule that decides where it runs.

The conv tests' shapes have too few channels to take this path; these have 16 and up. float32
takes the columns instead (tests/kernels/test_float32_accuracy.py measures why).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import cnnlab.kernels.im2col.conv as im2col_conv
from cnnlab.kernels.im2col import winograd
from tests.kernels.test_conv import assert_close, make_inputs, run_backend, run_torch
from tests.kernels.test_im2col_chunks import Im2colConv, split  # noqa: F401  (a fixture)

# (N, C, H, W, F, 3, 3), pad: odd and non-square planes, both tile sizes, tiles that hang over
# the output's edge, and every padding the path takes.
CASES = {
    "m2-odd": ((3, 16, 7, 9, 17, 3, 3), 1),
    "m2-pad0": ((4, 20, 8, 8, 16, 3, 3), 0),
    "m4-pad2": ((5, 16, 11, 10, 24, 3, 3), 2),
    "m4-square": ((2, 32, 16, 16, 16, 3, 3), 1),
    "m4-uneven-pad": ((3, 16, 13, 9, 16, 3, 3), (1, 2)),
    "tiny-plane": ((2, 16, 3, 4, 16, 3, 3), 0),
}


def one_tile(m, BK, GK, AK):
    """y = AT [(G g G.T) * (BT d BT.T)] AT.T on one random tile, and the sum it stands for."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    y = (AK @ ((GK @ g.ravel()) * (BK @ d.ravel()))).reshape(m, m)
    direct = [[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(m)] for i in range(m)]
    return y, direct


@pytest.mark.parametrize("m", [2, 4])
def test_one_tile_is_the_direct_correlation(m):
    y, direct = one_tile(m, *winograd.transforms(m, np.dtype(np.float64)))
    np.testing.assert_allclose(y, direct, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "points",
    [
        (0, 1, -1, 2, -2),
        (0, 1, -1, Fraction(1, 2)),
        (0, Fraction(1, 3), -3, 1, -1, 2, Fraction(-1, 2)),
    ],
    ids=["lavin-m4", "m3", "m6"],
)
def test_transforms_follow_from_any_points(points):
    """Toom-Cook on other points and tile sizes: Lavin's F(4, 3) points, F(3, 3), F(6, 3)."""
    m = len(points) - 1
    exact = tuple(Fraction(p) for p in points)
    BT, G, AT = (np.array(t, np.float64) for t in winograd._toom_cook(m, exact))
    y, direct = one_tile(m, *(np.kron(t, t) for t in (BT, G, AT)))
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_torch(split, case, threads):  # noqa: F811  (split is a fixture)
    shape, pad = case
    conv = Im2colConv(split(threads, chunk_bytes=20_000))  # several chunks per worker
    x, w, b = make_inputs(shape, seed=6)
    _, cache = conv.conv2d_forward(x, w, b, 1, pad)
    assert cache[3].tiling is not None, "this shape should take the Winograd path"
    got = run_backend(conv, x, w, b, 1, pad)
    assert_close(got[:4], run_torch(x, w, b, 1, pad, got[4]), 1e-10, f"{threads} threads")


def test_without_bias_and_with_it_switched_off(monkeypatch):
    x, w, _ = make_inputs((3, 16, 8, 8, 16, 3, 3), seed=7)
    winograd_result = run_backend(im2col_conv, x, w, None, 1, 1)
    assert winograd_result[3] is None
    _, cache = im2col_conv.conv2d_forward(x, w, None, 1, 1, winograd=False)
    assert cache[3].tiling is None

    def refuse(*args, **kwargs):
        raise AssertionError("Winograd ran though switched off")

    # Off in the forward, off in its backward too (dx as a convolution included).
    monkeypatch.setattr(im2col_conv, "winograd_forward", refuse)
    monkeypatch.setattr(im2col_conv, "winograd_weight_grads", refuse)
    columns_result = run_backend(Im2colConv(None, winograd=False), x, w, None, 1, 1)
    assert_close((*winograd_result[:3], None), (*columns_result[:3], None), 1e-12)


def test_float32_takes_the_columns(monkeypatch):
    """In float32 Winograd rounds several times more than torch, or (F(2, 3) summed in channel
    blocks) runs slower than the columns: forward, dw and dx all take the columns."""
    x, w, _ = make_inputs((2, 16, 8, 8, 16, 3, 3), seed=8, dtype=np.float32)
    _, cache = im2col_conv.conv2d_forward(x, w, None, 1, 1)
    assert cache[3].tiling is None

    def refuse(*args, **kwargs):
        raise AssertionError("Winograd ran in float32")

    monkeypatch.setattr(im2col_conv, "winograd_forward", refuse)
    monkeypatch.setattr(im2col_conv, "winograd_weight_grads", refuse)
    assert all(g.dtype == np.float32 for g in run_backend(im2col_conv, x, w, None, 1, 1)[:3])


def test_rule_takes_3x3_stride1_layers_with_channels():
    def tiling(x_shape, w_shape, stride=1, pad=1, dtype=np.float64):
        H, W = x_shape[2:]
        Ho = (H + 2 * pad - w_shape[2]) // stride + 1
        out_hw = (Ho, (W + 2 * pad - w_shape[3]) // stride + 1)
        pads = (pad,) * 2
        return winograd.winograd_tiling(x_shape, w_shape, (stride,) * 2, pads, out_hw, dtype)

    assert tiling((128, 64, 32, 32), (64, 64, 3, 3)).m == 4  # ResNet's first stage
    assert tiling((128, 512, 4, 4), (512, 512, 3, 3)).m == 2  # 4 x 4 outputs: small tiles
    assert tiling((128, 64, 32, 32), (128, 64, 3, 3), stride=2) is None
    assert tiling((128, 6, 14, 14), (16, 6, 5, 5), pad=0) is None  # LeNet C3: 5x5
    assert tiling((128, 3, 32, 32), (16, 3, 3, 3)) is None  # too few input channels
    assert tiling((128, 16, 8, 8), (16, 16, 3, 3), pad=3) is None  # dx would need pad -1
    assert tiling((128, 64, 32, 32), (64, 64, 3, 3), dtype=np.float32) is None


def test_workers_split_the_batch_unless_the_filters_outweigh_its_tiles():
    def splits(n, channels, size):
        x, w = (n, channels, size, size), (channels, channels, 3, 3)
        tiling = winograd.winograd_tiling(x, w, (1, 1), (1, 1), (size, size), np.float64)
        return tiling.split_batch()

    assert not splits(32, 512, 4)  # U: 16 x 512 x 512, tiles: 32 x 4 (x 512)
    assert splits(128, 512, 4)
    assert splits(32, 128, 16)
