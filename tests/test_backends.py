"""The backends as the registry gives them: naive, im2col and torch agree (float64, <= 1e-10)
on random shapes, and shape mistakes are the same clear error on each."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnlab.backends import BACKENDS, get_backend, resolve_backends
from cnnlab.compare import rel_error
from cnnlab.errors import BackendUnavailableError, ShapeError, UsageError

NAMES = ("naive", "im2col", "torch")
KERNELS = {name: BACKENDS[name].kernels() for name in NAMES}
TOL = 1e-10


def run_all(forward, backward, arrays, seed=0):
    """Run one pair on every kernel set; return {name: (out, grads)}."""
    results = {}
    dout = None
    for name, k in KERNELS.items():
        out, cache = forward(k, {key: v.copy() for key, v in arrays.items()})
        if dout is None:
            dout = np.random.default_rng(seed).standard_normal(np.shape(out))
        grads = backward(k, cache, dout)
        grads = grads if isinstance(grads, tuple) else (grads,)
        results[name] = (np.asarray(out), [g for g in grads if g is not None])
    return results


def assert_agree(results):
    ref_out, ref_grads = results["torch"]
    for name in ("naive", "im2col"):
        out, grads = results[name]
        assert out.shape == ref_out.shape
        assert rel_error(out, ref_out) <= TOL, name
        assert len(grads) == len(ref_grads)
        for g, r in zip(grads, ref_grads, strict=True):
            assert g.shape == r.shape and rel_error(g, r) <= TOL, name


@st.composite
def conv_problems(draw):
    N, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    HH, WW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, HH - 2 * ph), 9))
    W = draw(st.integers(max(1, WW - 2 * pw), 9))
    bias = draw(st.booleans())
    return (N, C, H, W), (F, C, HH, WW), (sh, sw), (ph, pw), bias


@given(conv_problems(), st.integers(0, 2**16))
def test_conv_agrees_across_backends(problem, seed):
    x_shape, w_shape, stride, pad, bias = problem
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape)}
    if bias:
        arrays["b"] = rng.standard_normal(w_shape[0])
    results = run_all(
        lambda k, a: k.conv2d_forward(a["x"], a["w"], a.get("b"), stride, pad),
        lambda k, c, d: k.conv2d_backward(d, c),
        arrays,
        seed,
    )
    assert_agree(results)


@st.composite
def pool_problems(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 9))
    W = draw(st.integers(max(1, kw - 2 * pw), 9))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W), (kh, kw), (sh, sw), (ph, pw)


@given(pool_problems(), st.sampled_from(["max", "avg"]), st.integers(0, 2**16))
def test_pooling_agrees_across_backends(problem, kind, seed):
    x_shape, kernel, stride, pad = problem
    x = np.random.default_rng(seed).standard_normal(x_shape)  # continuous: no ties
    if kind == "max":
        fwd = lambda k, a: k.maxpool2d_forward(a["x"], kernel, stride, pad)  # noqa: E731
        bwd = lambda k, c, d: k.maxpool2d_backward(d, c)  # noqa: E731
    else:
        fwd = lambda k, a: k.avgpool2d_forward(a["x"], kernel, stride, pad)  # noqa: E731
        bwd = lambda k, c, d: k.avgpool2d_backward(d, c)  # noqa: E731
    assert_agree(run_all(fwd, bwd, {"x": x}, seed))


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (3, 4, 1, 1), (2, 6, 3, 2), (5, 6)])
@pytest.mark.parametrize("train", [True, False])
def test_norms_agree_across_backends(shape, train):
    rng = np.random.default_rng(1)
    C = shape[1]
    arrays = {
        "x": rng.standard_normal(shape) * 2 + 1,
        "gamma": rng.uniform(0.5, 1.5, C),
        "beta": rng.standard_normal(C),
        "rm": rng.standard_normal(C),
        "rv": rng.uniform(0.5, 2, C),
    }
    if not (train and len(shape) == 2 and shape[0] == 1):
        running = {}
        results = {}
        for name, k in KERNELS.items():
            a = {key: v.copy() for key, v in arrays.items()}
            out, cache = k.batchnorm_forward(
                a["x"], a["gamma"], a["beta"], a["rm"], a["rv"], train=train
            )
            dout = np.random.default_rng(2).standard_normal(out.shape)
            results[name] = (out, list(k.batchnorm_backward(dout, cache, mode="staged")))
            running[name] = (a["rm"], a["rv"])
        assert_agree(results)
        for name in ("naive", "im2col"):
            for got, ref in zip(running[name], running["torch"], strict=True):
                assert rel_error(got, ref) <= TOL
    assert_agree(
        run_all(
            lambda k, a: k.layernorm_forward(a["x"], a["gamma"], a["beta"]),
            lambda k, c, d: k.layernorm_backward(d, c),
            {key: arrays[key] for key in ("x", "gamma", "beta")},
        )
    )
    if len(shape) == 4 and C % 2 == 0:
        assert_agree(
            run_all(
                lambda k, a: k.groupnorm_forward(a["x"], a["gamma"], a["beta"], 2),
                lambda k, c, d: k.groupnorm_backward(d, c),
                {key: arrays[key] for key in ("x", "gamma", "beta")},
            )
        )


def test_dense_layers_agree_across_backends():
    rng = np.random.default_rng(3)
    x4 = rng.standard_normal((3, 2, 5, 3))
    assert_agree(
        run_all(
            lambda k, a: k.flatten_forward(a["x"]),
            lambda k, c, d: k.flatten_backward(d, c),
            {"x": x4},
        )
    )
    assert_agree(
        run_all(
            lambda k, a: k.relu_forward(a["x"]), lambda k, c, d: k.relu_backward(d, c), {"x": x4}
        )
    )
    assert_agree(
        run_all(
            lambda k, a: k.global_avgpool_forward(a["x"]),
            lambda k, c, d: k.global_avgpool_backward(d, c),
            {"x": x4},
        )
    )
    lin = {
        "x": rng.standard_normal((1, 7)),
        "w": rng.standard_normal((4, 7)),
        "b": rng.standard_normal(4),
    }
    assert_agree(
        run_all(
            lambda k, a: k.linear_forward(a["x"], a["w"], a["b"]),
            lambda k, c, d: k.linear_backward(d, c),
            lin,
        )
    )
    mask = rng.random(x4.shape) >= 0.5
    assert_agree(
        run_all(
            lambda k, a: k.dropout_forward(a["x"], mask, 0.5),
            lambda k, c, d: k.dropout_backward(d, c),
            {"x": x4},
        )
    )
    logits, y = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    losses = {name: k.softmax_cross_entropy(logits, y) for name, k in KERNELS.items()}
    for name in ("naive", "im2col"):
        assert abs(losses[name][0] - losses["torch"][0]) <= TOL * abs(losses["torch"][0])
        assert rel_error(losses[name][1], losses["torch"][1]) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_dense_batchnorm_training_on_one_sample_is_an_error(name):
    k = KERNELS[name]
    x, ones, zeros = np.ones((1, 4)), np.ones(4), np.zeros(4)
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        k.batchnorm_forward(x, ones, zeros, zeros.copy(), ones.copy(), train=True)
    out, _ = k.batchnorm_forward(x, ones, zeros, zeros.copy(), ones.copy(), train=False)
    assert out.shape == (1, 4)  # eval on one sample is fine, as in torch


@pytest.mark.parametrize("name", NAMES)
def test_shape_mistakes_name_the_shapes_on_every_backend(name):
    k = KERNELS[name]
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ShapeError, match=r"\(2, 3, 4, 4\).*5x5.*< 1"):
        k.conv2d_forward(x, np.zeros((2, 3, 5, 5)), None, 1, 0)
    with pytest.raises(ShapeError, match=r"3 channels.*\(2, 2, 3, 3\)"):
        k.conv2d_forward(x, np.zeros((2, 2, 3, 3)), None, 1, 0)
    with pytest.raises(ShapeError, match="groups"):
        k.groupnorm_forward(x, np.ones(3), np.zeros(3), 2)


def test_registry_resolves_lists_and_all():
    assert [b.name for b in resolve_backends("all")] == ["naive", "im2col", "torch", "cuda"]
    assert [b.name for b in resolve_backends(["im2col", "naive", "im2col"])] == ["im2col", "naive"]
    with pytest.raises(UsageError, match="choose from naive, im2col, torch, cuda, user"):
        resolve_backends(["foo"])
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        get_backend("nope")


def test_cuda_without_a_gpu_is_a_clear_error():
    cuda = BACKENDS["cuda"]
    ok, reason = cuda.availability()
    if ok:
        pytest.skip("CUDA is available here")
    with pytest.raises(BackendUnavailableError, match="backend=cuda cannot run here") as info:
        cuda.kernels()
    assert "\n" not in str(info.value) and reason in str(info.value)
