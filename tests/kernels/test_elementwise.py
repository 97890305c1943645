"""Element-wise kernels split across worker threads give the plain kernels' numbers exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.compare import rel_error
from cnnlab.kernels.common import activation
from cnnlab.kernels.im2col import Im2col
from cnnlab.kernels.naive import Naive
from cnnlab.kernels.torch import TorchKernels

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "elu", "gelu", "silu", "relu6"]


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spans_on_two_threads_equal_the_whole_array(name, dtype):
    # 600k elements: several spans per thread, and a last span shorter than the others.
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 5, 200, 200)) * 3).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    plain_forward = getattr(activation, f"{name}_forward")
    plain_backward = getattr(activation, f"{name}_backward")
    want, cache = plain_forward(x)
    want_dx = plain_backward(dout, cache)
    kernels = Im2col(threads=2)
    out, cache = getattr(kernels, f"{name}_forward")(x)
    dx = getattr(kernels, f"{name}_backward")(dout, cache)
    assert out.dtype == dx.dtype == dtype and out.shape == dx.shape == x.shape
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(dx, want_dx)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_split_kernels_match_torch_and_naive(name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 300, 300)) * 4
    x[0, 0, 0, :4] = [0.0, 6.0, -0.0, 1e-300]  # kinks of relu, relu6 and elu
    dout = rng.standard_normal(x.shape)
    results = {}
    for kernels in (Naive(), Im2col(threads=2), TorchKernels()):
        out, cache = getattr(kernels, f"{name}_forward")(x)
        results[type(kernels).__name__] = (out, getattr(kernels, f"{name}_backward")(dout, cache))
    for label, (out, dx) in results.items():
        assert rel_error(out, results["TorchKernels"][0]) < 1e-14, label
        assert rel_error(dx, results["TorchKernels"][1]) < 1e-14, label


def test_a_split_kernel_keeps_a_non_contiguous_input_and_its_shape():
    x = np.random.default_rng(5).standard_normal((4, 6, 80, 90))[:, ::2].transpose(0, 1, 3, 2)
    kernels = Im2col(threads=2)
    out, cache = kernels.tanh_forward(x)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, np.tanh(x))
    dx = kernels.tanh_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, 1 - np.tanh(x) ** 2, rtol=1e-14)
