"""The pooling layer descriptions: output shapes with ceil_mode and adaptive sizes, labels, and a
small net of them run alike by the numpy and torch executors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.compare import rel_error
from cnnlab.errors import ShapeError
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import out_shape, param_specs


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        (MaxPool2d(3, 2), (4, 8, 6), (4, 3, 2)),
        (MaxPool2d(3, 2, ceil_mode=True), (4, 8, 6), (4, 4, 3)),
        (AvgPool2d(3, 2, 1, ceil_mode=True), (2, 6, 8), (2, 4, 5)),
        (AvgPool2d(2, 2, 1, ceil_mode=True), (2, 5, 5), (2, 3, 3)),  # the 4th window is dropped
        (AdaptiveAvgPool2d((3, 2)), (5, 7, 5), (5, 3, 2)),
        (AdaptiveAvgPool2d(7), (512, 2, 3), (512, 7, 7)),
    ],
)
def test_out_shape(layer, shape, expected):
    assert layer.out_shape(shape) == expected


def test_labels_show_ceil_mode_and_the_output_size():
    assert MaxPool2d(3, 2, 1).describe() == "MaxPool2d 3x3 s2 p1"
    assert MaxPool2d(3, 2, 1, ceil_mode=True).describe() == "MaxPool2d 3x3 s2 p1 ceil"
    assert AvgPool2d(2, ceil_mode=True).describe() == "AvgPool2d 2x2 s2 p0 ceil"
    assert AdaptiveAvgPool2d((7, 5)).describe() == "AdaptiveAvgPool2d 7x5"


def test_an_adaptive_output_under_1x1_is_a_shape_error_naming_the_layer():
    net = Sequential((("pool", AdaptiveAvgPool2d((0, 2))),))
    with pytest.raises(ShapeError, match=r"layer pool .* output size must be at least 1x1"):
        out_shape(net, (3, 4, 4))


def test_a_net_of_pools_runs_alike_on_every_backend():
    """ceil_mode and the adaptive output size reach the kernels through the registrations'
    bindings, on the numpy and the torch executors."""
    net = Sequential(
        (
            ("pool1", MaxPool2d(3, 2, 1, ceil_mode=True)),  # 9x7 -> 5x4
            ("pool2", AvgPool2d(2, 2, ceil_mode=True)),  # -> 3x2
            ("pool3", AdaptiveAvgPool2d((2, 3))),  # -> 2x3
            ("flatten", Flatten()),
            ("fc", Linear(4)),
        )
    )
    in_shape = (3, 9, 7)
    assert out_shape(net, in_shape) == (4,)
    rng = np.random.default_rng(0)
    params = {p.name: rng.standard_normal(p.shape) for p in param_specs(net, in_shape)}
    x, y = rng.standard_normal((2, *in_shape)), np.array([1, 3])
    results = {
        name: BACKENDS[name].model(net, params, {}).loss(x, y)
        for name in ("naive", "im2col", "torch")
    }
    loss_t, grads_t, logits_t = results.pop("torch")
    for loss, grads, logits in results.values():
        assert abs(loss - loss_t) <= 1e-12 * abs(loss_t)
        assert rel_error(logits, logits_t) <= 1e-10
        for name in params:
            assert rel_error(grads[name], grads_t[name]) <= 1e-10
