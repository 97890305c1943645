"""The input contract (cnnlab.kernels.contract), the same on every backend: empty batches,
integer arguments, dout shapes, dtypes, max-pool routing at -inf and NaN, the loss's labels,
ReLU at NaN, dropout masks and group-norm wording."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.ops import layer_cases
from cnnlab.ops.registry import checked

NAMES = ("naive", "im2col", "torch", "cuda")


def kernels_of(name: str):
    backend = BACKENDS[name]
    ok, reason = backend.availability()
    if not ok:
        pytest.skip(reason)
    return backend.kernels()


@pytest.fixture(params=NAMES)
def kern(request):
    return kernels_of(request.param)


# One case per registered kind with a kernel pair (the loss is a function, not a pair).
PAIR_CASES = {
    kind.name: next(c for c in layer_cases(kind.name))
    for kind in checked()
    if kind.pair and kind.name != "softmax"
}


def _is_input(name: str, inputs: tuple[str, ...]) -> bool:
    """Whether a case's array is an input: one of ``inputs``, or ``xs[i]`` of a ``*xs``."""
    return name.partition("[")[0] in inputs


def _empty_batch(arrays: dict, inputs: tuple[str, ...]) -> dict:
    """The case's arrays with every input (and the mask, which has x's shape) cut to N = 0."""
    return {k: v[:0] if _is_input(k, (*inputs, "mask")) else v for k, v in arrays.items()}


@pytest.mark.parametrize("layer", PAIR_CASES)
def test_an_empty_batch_gives_empty_outputs_and_zero_parameter_gradients(kern, layer):
    kind = next(k for k in checked() if k.name == layer)
    case = PAIR_CASES[layer]
    arrays = _empty_batch(case.make(np.random.default_rng(0)), kind.inputs)
    out, cache = case.forward(kern, arrays)
    out = np.asarray(out)
    assert out.shape[0] == 0
    grads = case.backward(kern, cache, np.zeros(out.shape))
    for name, grad in zip(case.wrt, grads, strict=True):
        assert grad.shape == arrays[name].shape, name
        if not _is_input(name, kind.inputs):
            assert np.all(grad == 0), name


@pytest.mark.parametrize("layer", PAIR_CASES)
def test_a_dout_of_another_shape_is_a_shape_error(kern, layer):
    case = PAIR_CASES[layer]
    out, cache = case.forward(kern, case.make(np.random.default_rng(1)))
    wrong = np.zeros((*np.shape(out)[:-1], np.shape(out)[-1] + 1))
    with pytest.raises(ShapeError, match=r"_backward: dout .* must have the shape of out"):
        case.backward(kern, cache, wrong)


X = np.random.default_rng(2).standard_normal((1, 3, 6, 6))
W = np.random.default_rng(3).standard_normal((2, 3, 3, 3))


@pytest.mark.parametrize(
    "call",
    [
        lambda k, v: k.conv2d_forward(X, W, None, v, np.int64(1)),
        lambda k, v: k.maxpool2d_forward(X, v),
        lambda k, v: k.avgpool2d_forward(X, np.int64(2), v),
    ],
    ids=["conv stride", "maxpool kernel", "avgpool stride"],
)
def test_numpy_integers_are_taken_and_fractions_refused_naming_the_argument(kern, call):
    out, _ = call(kern, np.int64(2))
    np.testing.assert_array_equal(out, call(kern, 2)[0])
    with pytest.raises(
        ShapeError, match=r"(stride|kernel) must be an int or a pair of ints, got 1\.5"
    ):
        call(kern, 1.5)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda k: k.conv2d_forward(X.astype(np.int64), W, None), "x"),
        (lambda k: k.conv2d_forward(X, W.astype(bool), None), "w"),
        (lambda k: k.linear_forward(np.ones((2, 4)), np.ones((3, 4), np.int32), None), "w"),
        (
            lambda k: k.batchnorm_forward(X, np.ones(3, int), np.zeros(3), np.zeros(3), np.ones(3)),
            "gamma",
        ),
    ],
    ids=["int x", "bool w", "int linear w", "int gamma"],
)
def test_arrays_that_are_not_float_are_refused_naming_them(kern, call, argument):
    with pytest.raises(ArgumentError, match=rf": {argument} must be float32 or float64, got"):
        call(kern)


def test_mixed_float32_and_float64_arguments_are_refused(kern):
    with pytest.raises(ArgumentError, match="w is float32 but x is float64"):
        kern.conv2d_forward(X, W.astype(np.float32), None)
    with pytest.raises(ArgumentError, match="w is float64 but x is float32"):
        kern.linear_forward(np.ones((2, 4), np.float32), np.ones((3, 4)), None)
    out, cache = kern.conv2d_forward(X.astype(np.float32), W.astype(np.float32), None)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in kern.conv2d_backward(np.ones_like(out), cache)[:2])


def _maxpool_dx(kern, x, kernel, stride, pad, ties="first"):
    out, cache = kern.maxpool2d_forward(x, kernel, stride, pad, ties)
    return out, kern.maxpool2d_backward(np.ones_like(out), cache)


def test_max_pool_routes_like_torch_next_to_padding_and_at_nan(kern):
    # Every window of -inf: torch sends it to the window's first element inside x.
    _, dx = _maxpool_dx(kern, np.array([[[[-np.inf, -np.inf]]]]), 2, 1, 1)
    np.testing.assert_array_equal(dx, [[[[4.0, 2.0]]]])
    # A window holding NaN sends its gradient to the NaN (the last one, as torch scans).
    x = np.array([[[[1.0, np.nan], [np.nan, 2.0]]]])
    out, dx = _maxpool_dx(kern, x, 2, 2, 0)
    assert np.isnan(out).all()
    np.testing.assert_array_equal(dx, [[[[0.0, 0.0], [1.0, 0.0]]]])


@pytest.mark.parametrize(
    ("x", "expected_dx"),
    [
        (np.full((1, 1, 2, 2), 1e308), [[[[1.0, 1.0], [1.0, 1.0]]]]),  # ties whose sum overflows
        (np.array([[[[np.inf, np.inf], [0.0, 1.0]]]]), [[[[1.0, 1.0], [0.0, 0.0]]]]),
        (np.array([[[[-np.inf, -np.inf], [-np.inf, -np.inf]]]]), [[[[1.0, 1.0], [1.0, 1.0]]]]),
    ],
    ids=["1e308", "inf", "-inf"],
)
def test_max_pool_all_ties_is_exact_at_infinities(kern, x, expected_dx):
    out, dx = _maxpool_dx(kern, x, 2, 2, 0, ties="all")
    np.testing.assert_array_equal(out, x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(dx, expected_dx)


@pytest.mark.parametrize(
    ("logits", "y", "error", "words"),
    [
        (np.zeros((2, 3)), np.array([0, -100]), ArgumentError, "labels must be in [0, 3)"),
        (np.zeros((2, 3)), np.array([0.0, 1.7]), ArgumentError, "labels must be integers"),
        (np.zeros((2, 3)), np.array([True, False]), ArgumentError, "labels must be integers"),
        (np.zeros((0, 3)), np.zeros(0, int), ShapeError, "the batch is empty"),
        (np.zeros((2, 3), int), np.array([0, 1]), ArgumentError, "logits must be float32"),
    ],
    ids=["-100", "float labels", "bool labels", "empty batch", "int logits"],
)
def test_the_loss_refuses_the_same_labels_everywhere(kern, logits, y, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace(")", r"\)")):
        kern.softmax_cross_entropy(logits, y)


def test_relu_passes_the_gradient_at_nan_and_stops_it_at_zero_and_below(kern):
    x = np.array([[np.nan, 0.0, -1.0, 2.0]])
    _, cache = kern.relu_forward(x)
    dx = kern.relu_backward(np.array([[1.0, 3.0, 3.0, 1.0]]), cache)
    np.testing.assert_array_equal(dx, [[1.0, 0.0, 0.0, 1.0]])


def test_a_dropout_mask_that_is_not_bool_is_refused(kern):
    with pytest.raises(
        ArgumentError, match="dropout: mask must be a bool array, got dtype float64"
    ):
        kern.dropout_forward(np.ones((1, 2)), np.array([[1.0, 0.0]]), 0.5)


def test_group_norm_refuses_groups_in_the_same_words(kern):
    with pytest.raises(ShapeError) as info:
        kern.groupnorm_forward(np.zeros((1, 4, 2, 2)), np.ones(4), np.zeros(4), 3)
    assert str(info.value) == (
        "groupnorm: groups (3) must be a positive divisor of the C=4 channels of x (1, 4, 2, 2)"
    )


@pytest.mark.parametrize("name", ["naive", "im2col"])
def test_a_numpy_cache_holds_the_callers_arrays(name):
    """As the contract says (and CS231n's caches do): changing x in place between forward and
    backward changes the weight gradient on the numpy backends."""
    kern = kernels_of(name)
    x, dout = X.copy(), np.ones((1, 2, 4, 4))
    _, cache = kern.conv2d_forward(x, W, None)
    before = kern.conv2d_backward(dout, cache)[1].copy()
    x *= 2
    after = kern.conv2d_backward(dout, cache)[1]
    np.testing.assert_allclose(after, 2 * before)
