"""DenseNet-BC-121: torchvision's parameter count and published multiply-adds, channels that
grow by the growth rate and halve at transitions, and pre-activated convs without bias."""

from __future__ import annotations

import pytest

from cnnlab.config import compose
from cnnlab.errors import UsageError
from cnnlab.ops.activation import ReLU
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.norm import BatchNorm
from cnnlab.ops.structure import Concat
from cnnlab.ops.tree import leaves, summarize
from tests.models.test_models import IMAGENET
from tests.models.test_models import net_for as models_net_for


def net_for(overrides: list[str], width: float = 1.0):
    _, net, in_shape = models_net_for(["model=densenet121", *overrides], width)
    return net, in_shape


def test_parameter_counts_and_multiply_adds():
    net, in_shape = net_for(IMAGENET)
    big = summarize(net, in_shape)
    assert big["total_params"] == 7_978_856  # torchvision's densenet121
    # torchvision's published 2.83 GFLOPS count a multiply-add as one; cnnlab counts two.
    assert big["total_flops"] / 2 == pytest.approx(2.83e9, rel=0.05)
    net, in_shape = net_for(["data=cifar10"])
    assert summarize(net, in_shape)["total_params"] == 6_956_426


def test_channels_grow_by_the_growth_rate_and_transitions_halve_them():
    net, in_shape = net_for([])  # 3x32x32, the CIFAR stem
    shapes = {leaf.name: leaf.out_shape for leaf in leaves(net, in_shape)}
    # 64 + 6*32 = 256 into transition1, which keeps 128 at half the size; and so on.
    assert shapes["block1.layer1.new.conv2"] == (32, 32, 32)
    assert shapes["transition1.conv"] == (128, 32, 32)
    assert shapes["transition1.pool"] == (128, 16, 16)
    assert shapes["transition2.pool"] == (256, 8, 8)  # (128 + 12*32) / 2
    assert shapes["transition3.pool"] == (512, 4, 4)  # (256 + 24*32) / 2
    assert shapes["norm5"] == (1024, 4, 4)  # 512 + 16*32
    concats = [node for _, block in net.children[3:] for _, node in getattr(block, "children", ())]
    assert sum(isinstance(node, Concat) for node in concats) == 6 + 12 + 24 + 16


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_every_conv_is_pre_activated_and_has_no_bias(norm):
    net, in_shape = net_for([f"norm={norm}"])
    infos = list(leaves(net, in_shape))
    convs = [i for i, leaf in enumerate(infos) if isinstance(leaf.layer, Conv2d)]
    assert not any(infos[i].layer.bias for i in convs)
    for i in convs[1:]:  # all but the stem's conv: (norm –) ReLU – conv
        assert isinstance(infos[i - 1].layer, ReLU), infos[i].name
        if norm == "batch":
            assert isinstance(infos[i - 2].layer, BatchNorm), infos[i].name


def test_compression_above_one_is_a_usage_error():
    with pytest.raises(UsageError, match=r"model.compression must be in \(0, 1\]"):
        compose("summary", ["model=densenet121", "model.compression=1.5"])
