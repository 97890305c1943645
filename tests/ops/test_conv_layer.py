"""The conv layer description: shapes, parameters and FLOPs with groups and dilation."""

from __future__ import annotations

import pytest

from cnnlab.errors import ShapeError
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import summarize


def test_flops_count_each_filter_over_its_own_group():
    # Depthwise 3x3 on 64 channels at 32x32: 9 multiply-adds per output value.
    depthwise = Conv2d(64, 3, 1, 1, bias=False, groups=64)
    assert depthwise.flops((64, 32, 32)) == 2 * 9 * 64 * 32 * 32
    # 32 groups of 4 -> 4 channels: a 32nd of the dense conv's work.
    grouped, dense = Conv2d(128, 3, 1, 1, groups=32), Conv2d(128, 3, 1, 1)
    assert grouped.flops((128, 16, 16)) * 32 == dense.flops((128, 16, 16))


def test_grouped_weights_have_the_channels_of_one_group():
    (w, b) = Conv2d(12, (3, 1), groups=4).params((8, 5, 5))
    assert (w.name, w.shape) == ("w", (12, 2, 3, 1)) and b.shape == (12,)


def test_dilation_widens_the_window():
    # A 3x3 kernel with dilation 2 spans 5x5: 9 -> 5 on a 9x9 map without padding.
    assert Conv2d(4, 3, dilation=2).out_shape((2, 9, 9)) == (4, 5, 5)
    assert Conv2d(4, 3, pad=2, dilation=2).out_shape((2, 9, 9)) == (4, 9, 9)
    assert Conv2d(4, (3, 2), 2, 1, dilation=(2, 3)).out_shape((2, 8, 9)) == (4, 3, 4)


def test_summary_rows_show_groups_and_dilation():
    net = Sequential((("dw", Conv2d(16, 3, 1, 2, False, 2, 16)),))
    (row,) = summarize(net, (16, 8, 8))["layers"]
    assert row["layer"] == "Conv2d 16@3x3 s1 p2 d2 g16 no bias"
    assert row["params"] == 16 * 9 and row["flops"] == 2 * 9 * 16 * 8 * 8


def test_channels_that_do_not_split_into_groups_name_the_layer():
    net = Sequential((("conv", Conv2d(6, 3, groups=4)),))
    with pytest.raises(ShapeError, match=r"layer conv .*groups \(4\) must be a positive divisor"):
        summarize(net, (6, 8, 8))
