"""ZFNet and Network in Network: the papers' layer sizes and parameter counts."""

from __future__ import annotations

import pytest

from cnnlab.ops.linear import Linear
from cnnlab.ops.norm import LRN
from cnnlab.ops.tree import leaves, summarize
from tests.models.test_models import IMAGENET, net_for


def shapes(net, in_shape) -> dict[str, tuple[int, ...]]:
    return {leaf.name: leaf.out_shape for leaf in leaves(net, in_shape)}


def test_imagenet_zfnet_has_the_papers_maps():
    # Zeiler and Fergus's figure 3: 224 -> 110 (conv1) -> 55 -> 26 (conv2) -> 13 -> 6.
    _, net, in_shape = net_for(["model=zfnet", *IMAGENET])
    out = shapes(net, in_shape)
    assert out["conv1"] == (96, 110, 110) and out["pool1"] == (96, 55, 55)
    assert out["conv2"] == (256, 26, 26) and out["pool2"] == (256, 13, 13)
    assert out["conv5"] == (256, 13, 13) and out["pool5"] == (256, 6, 6)
    assert isinstance(dict((leaf.name, leaf.layer) for leaf in leaves(net, in_shape))["norm1"], LRN)
    assert summarize(net, in_shape)["total_params"] == 62_357_608


def test_cifar_zfnet_shrinks_32_to_4_with_its_three_pools():
    _, net, in_shape = net_for(["model=zfnet", "data=cifar10"])
    out = shapes(net, in_shape)
    assert out["pool1"] == (96, 16, 16) and out["pool2"] == (256, 8, 8)
    assert out["pool5"] == (256, 4, 4)
    assert summarize(net, in_shape)["total_params"] == 37_318_538


@pytest.mark.parametrize(
    ("overrides", "params", "last_maps"),
    [
        (["data=cifar10"], 966_986, (10, 8, 8)),  # the authors' CIFAR-10 model
        (IMAGENET, 7_595_176, (1000, 6, 6)),
    ],
    ids=["cifar", "imagenet"],
)
def test_nin_ends_in_one_map_per_class_averaged_without_a_linear_layer(
    overrides, params, last_maps
):
    _, net, in_shape = net_for(["model=nin", *overrides])
    infos = list(leaves(net, in_shape))
    assert not any(isinstance(leaf.layer, Linear) for leaf in infos)
    last_conv = [leaf for leaf in infos if leaf.name.endswith("conv3")][-1]
    assert last_conv.out_shape == last_maps
    assert infos[-1].name.startswith("pool") and infos[-1].out_shape == (last_maps[0],)
    assert summarize(net, in_shape)["total_params"] == params
