"""The ResNet family (resnet34, resnet50, resnext50_32x4d, se_resnet18): torchvision's parameter
counts and published multiply-adds, and the blocks' own structure."""

from __future__ import annotations

import pytest

from cnnlab.config import compose
from cnnlab.errors import UsageError
from cnnlab.models import build_net
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.tree import leaves, summarize
from tests.models.test_models import IMAGENET


def summary(model: str, overrides: list[str], width: float = 1.0) -> dict:
    cfg = compose("summary", [f"model={model}", *overrides])
    in_shape = tuple(cfg.data.shape)
    return summarize(build_net(cfg.model, cfg.norm, in_shape, width, cfg.act), in_shape)


def layers(model: str, overrides: list[str] = (), width: float = 1.0) -> dict:
    """Every leaf of the model on its data's shape, by name."""
    cfg = compose("summary", [f"model={model}", *overrides])
    in_shape = tuple(cfg.data.shape)
    net = build_net(cfg.model, cfg.norm, in_shape, width, cfg.act)
    return {leaf.name: leaf for leaf in leaves(net, in_shape)}


# Parameters: torchvision's with stem=imagenet and 1000 classes; the CIFAR stem with 10 classes.
# GMACs: torchvision's published GFLOPS (it counts a multiply-add as one) at 224x224.
@pytest.mark.parametrize(
    ("model", "imagenet", "cifar", "gmacs"),
    [
        ("resnet34", 21_797_672, 21_282_122, 3.66),
        ("resnet50", 25_557_032, 23_520_842, 4.09),
        ("resnext50_32x4d", 25_028_904, 22_992_714, 4.23),
        ("se_resnet18", 11_778_592, 11_263_042, 1.81),  # SE's linears add ~0.1M multiply-adds
    ],
)
def test_parameter_counts_and_multiply_adds(model, imagenet, cifar, gmacs):
    big = summary(model, IMAGENET)
    assert big["total_params"] == imagenet
    # cnnlab counts a conv's or linear's multiply-add as 2 FLOPs.
    assert big["total_flops"] / 2 == pytest.approx(gmacs * 1e9, rel=0.05)
    assert summary(model, ["data=cifar10"])["total_params"] == cifar


def test_resnet50_strides_on_the_3x3_and_widens_4x():
    got = layers("resnet50")
    first, second = got["layer2.0.block.conv1"], got["layer2.0.block.conv2"]
    assert (first.layer.stride, second.layer.stride) == (1, 2)  # torchvision's "v1.5"
    assert got["layer2.0.block.conv3"].out_shape == (512, 16, 16)
    assert got["layer2.0.block.shortcut.conv"].layer == Conv2d(512, 1, 2, 0, bias=False)
    # layer1's first block widens 64 -> 256 at stride 1: a projection shortcut all the same.
    assert got["layer1.0.block.shortcut.conv"].out_shape == (256, 32, 32)
    assert "layer1.1.block.shortcut.conv" not in got


def test_resnext_3x3_has_32_groups_of_4_channels_per_64_of_width():
    got = layers("resnext50_32x4d")
    for stage, channels in ((1, 128), (2, 256), (3, 512), (4, 1024)):
        conv = got[f"layer{stage}.0.block.conv2"].layer
        assert (conv.out_channels, conv.groups) == (channels, 32)
        assert conv.weight_shape(channels) == (channels, channels // 32, 3, 3)


def test_resnext_keeps_its_groups_when_narrowed():
    """At width 1/8 a group would get half a channel: it keeps one, the 32 groups stay."""
    conv = layers("resnext50_32x4d", width=0.125)["layer1.0.block.conv2"].layer
    assert (conv.out_channels, conv.groups) == (32, 32)


def test_se_scales_the_body_before_the_sum():
    got = layers("se_resnet18")
    names = list(got)
    se = [n for n in names if n.startswith("layer3.1.block.se.")]
    kinds = [type(got[n].layer).__name__ for n in se]
    assert kinds == ["GlobalAvgPool", "Linear", "ReLU", "Linear", "Sigmoid"]
    assert got["layer3.1.block.se.fc1"].out_shape == (256 // 16,)
    assert got["layer3.1.block.se.fc2"].out_shape == (256,)
    # The gate follows the body's last norm; the block's ReLU follows the sum.
    assert names.index("layer3.1.block.norm2") < names.index("layer3.1.block.se.pool")
    assert names.index("layer3.1.block.se.sigmoid") < names.index("layer3.1.relu")
    # Narrowed to 4 channels, the hidden layer keeps one unit.
    assert layers("se_resnet18", width=1 / 16)["layer1.0.block.se.fc1"].out_shape == (1,)


def test_grouped_basic_blocks_are_a_usage_error():
    with pytest.raises(
        UsageError, match=r"model\.groups and model\.width_per_group shape bottleneck"
    ):
        compose("summary", ["model=resnet18", "model.groups=32"])
