"""VGG-11 and VGG-16: torchvision's parameter counts and multiply-adds, the CIFAR classifier,
and VGG-BN."""

from __future__ import annotations

import pytest

from cnnlab.config import compose
from cnnlab.errors import UsageError
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.norm import BatchNorm
from cnnlab.ops.tree import leaves, summarize
from tests.models.test_models import IMAGENET, net_for

# cnnlab counts a conv's or linear layer's multiply-add as 2 FLOPs and leaves out norms, pools,
# activations and dropout; torchvision's "GFLOPS" are multiply-adds of the same layers, so they
# are compared with total_flops / 2.
TORCHVISION = {"vgg11": (132_863_336, 7.61e9), "vgg16": (138_357_544, 15.47e9)}


@pytest.mark.parametrize("model", list(TORCHVISION))
def test_imagenet_vgg_has_torchvisions_parameters_and_multiply_adds(model):
    params, macs = TORCHVISION[model]
    _, net, in_shape = net_for([f"model={model}", *IMAGENET])
    summary = summarize(net, in_shape)
    assert summary["total_params"] == params
    assert summary["total_flops"] / 2 == pytest.approx(macs, rel=0.05)
    assert net.out_shape(in_shape) == (1000,)


@pytest.mark.parametrize(("model", "params"), [("vgg11", 9_225_610), ("vgg16", 14_719_818)])
def test_cifar_vgg_ends_in_one_linear_layer_on_the_512_features(model, params):
    _, net, in_shape = net_for([f"model={model}", "data=cifar10"])
    infos = list(leaves(net, in_shape))
    assert [i.name for i in infos[-2:]] == ["flatten", "fc"] and infos[-1].in_shape == (512,)
    assert summarize(net, in_shape)["total_params"] == params


def test_vgg_bn_puts_a_norm_after_every_conv_and_drops_the_conv_biases():
    _, net, in_shape = net_for(["model=vgg16", "norm=batch", *IMAGENET])
    infos = list(leaves(net, in_shape))
    convs = [i for i, leaf in enumerate(infos) if isinstance(leaf.layer, Conv2d)]
    assert len(convs) == 13
    assert all(isinstance(infos[i + 1].layer, BatchNorm) for i in convs)
    assert not any(infos[i].layer.bias for i in convs)
    # torchvision's vgg16_bn (138,365,992) keeps the 4,224 conv biases the norms cancel.
    assert summarize(net, in_shape)["total_params"] == 138_365_992 - 4_224


def test_a_stage_without_convs_is_a_usage_error():
    with pytest.raises(UsageError, match=r"stages must be lists of conv widths, none empty"):
        compose("summary", ["model=vgg11", "model.stages=[[64],[]]"])
