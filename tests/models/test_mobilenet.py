"""MobileNetV2: torchvision's parameter count and published multiply-adds, the reference code's
width rounding, and where the residuals, depthwise convs and activations are."""

from __future__ import annotations

import pytest

from cnnlab.models.mobilenet import divisible
from cnnlab.ops.activation import ReLU6
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.structure import Residual
from cnnlab.ops.tree import leaves, summarize
from tests.models.test_models import IMAGENET
from tests.models.test_models import net_for as models_net_for


def net_for(overrides: list[str], width: float = 1.0):
    _, net, in_shape = models_net_for(["model=mobilenet_v2", *overrides], width)
    return net, in_shape


def test_parameter_counts_and_multiply_adds():
    net, in_shape = net_for(IMAGENET)
    big = summarize(net, in_shape)
    assert big["total_params"] == 3_504_872  # torchvision's mobilenet_v2
    # torchvision's published 0.30 GFLOPS count a multiply-add as one; cnnlab counts two.
    assert big["total_flops"] / 2 == pytest.approx(0.30e9, rel=0.05)
    net, in_shape = net_for(["data=cifar10"])
    assert summarize(net, in_shape)["total_params"] == 2_236_682


@pytest.mark.parametrize(
    ("channels", "rounded"),
    [(32.0, 32), (12.0, 16), (4.0, 8), (18.0, 24), (20.0, 24), (11.2, 16), (448.0, 448)],
    # 18 -> 16 would lose more than 10%: 24; 11.2 -> 8 likewise: 16
)
def test_widths_round_to_multiples_of_8_as_the_reference_code(channels, rounded):
    assert divisible(channels) == rounded


def test_width_multiplier_rounds_every_width_and_keeps_the_last_1280():
    net, in_shape = net_for([], width=0.5)
    convs = {
        leaf.name: leaf.layer for leaf in leaves(net, in_shape) if isinstance(leaf.layer, Conv2d)
    }
    assert convs["conv_stem"].out_channels == 16
    projections = [c.out_channels for n, c in convs.items() if n.endswith(".0.conv_project")]
    assert projections == [8, 16, 16, 32, 48, 80, 160]
    assert convs["conv_last"].out_channels == 1280  # not narrowed below 1
    net, in_shape = net_for([], width=1.4)
    last = next(leaf for leaf in leaves(net, in_shape) if leaf.name == "conv_last")
    assert last.layer.out_channels == 1792


def test_residuals_where_stride_is_1_and_channels_stay():
    net, _ = net_for(IMAGENET)
    stages = [stage for name, stage in net.children if name.startswith("stage")]
    residual = [[isinstance(b, Residual) for _, b in stage.children] for stage in stages]
    # Every block but each stage's first; stage 5's first keeps stride 1 but widens 64 -> 96.
    assert residual == [[False] + [True] * (n - 1) for n in (1, 2, 3, 4, 3, 3, 1)]


def test_depthwise_convs_and_linear_projections():
    net, in_shape = net_for(IMAGENET)
    infos = list(leaves(net, in_shape))
    for i, leaf in enumerate(infos):
        if leaf.name.endswith("conv_dw"):
            channels = leaf.in_shape[0]
            assert leaf.layer.groups == leaf.layer.out_channels == channels
            assert isinstance(infos[i + 2].layer, ReLU6)  # conv – norm – ReLU6
        if leaf.name.endswith("norm_project"):  # the linear bottleneck: no activation
            assert not isinstance(infos[i + 1].layer, ReLU6)
    assert infos[0].layer.stride == 2 and infos[-1].in_shape == (1280,)


@pytest.mark.parametrize(("stem", "size", "final"), [("imagenet", 224, 7), ("cifar", 32, 4)])
def test_stems_downsample_32x_and_8x(stem, size, final):
    net, in_shape = net_for([f"model.stem={stem}", f"data.shape=[3,{size},{size}]"])
    last = next(leaf for leaf in leaves(net, in_shape) if leaf.name == "conv_last")
    assert last.out_shape == (1280, final, final)


def test_act_fills_every_activation_slot_in_place_of_relu6():
    from cnnlab.ops.activation import GELU

    default, in_shape = net_for([])
    gelu, _ = net_for(["act=gelu"])
    relu6s = [leaf.name for leaf in leaves(default, in_shape) if isinstance(leaf.layer, ReLU6)]
    gelus = [leaf.name for leaf in leaves(gelu, in_shape) if isinstance(leaf.layer, GELU)]
    assert len(relu6s) == len(gelus) == 1 + 1 + 2 * 16 + 1  # stem, t=1 block, 16 t=6, last
    assert not any(isinstance(leaf.layer, ReLU6) for leaf in leaves(gelu, in_shape))
