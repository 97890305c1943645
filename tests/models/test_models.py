"""Architectures: parameter counts, norm slots, shape errors, and equality across backends."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.compare import compare, rel_error
from cnnlab.config import compose
from cnnlab.errors import ShapeError, UsageError
from cnnlab.models import MODELS, build_net, init_state
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.norm import LRN, BatchNorm, GroupNorm, LayerNorm
from cnnlab.ops.tree import leaves, summarize

# The papers' ImageNet networks, whose counts the tests compare with torchvision's.
IMAGENET = ["model.stem=imagenet", "model.num_classes=1000", "data.shape=[3,224,224]"]


def net_for(overrides: list[str], width: float = 1.0):
    """The composed summary config, the net it builds (its act= too) and its input shape."""
    cfg = compose("summary", overrides)
    in_shape = tuple(cfg.data.shape)
    return cfg, build_net(cfg.model, cfg.norm, in_shape, width, cfg.act), in_shape


@pytest.mark.parametrize(
    ("overrides", "params"),
    [
        (["model=lenet", "data=mnist"], 61_706),
        (["model=resnet18", "data=cifar10"], 11_173_962),
        (["model=resnet18", "model.stem=imagenet", "model.num_classes=1000"], 11_689_512),
    ],
)
def test_reference_parameter_counts(overrides, params):
    _, net, in_shape = net_for(overrides)
    assert summarize(net, in_shape)["total_params"] == params


def test_resnet18_flops_match_the_known_figure():
    # 0.56 G multiply-adds per 32x32 image with the CIFAR stem: 1.11 GFLOPs counted as 2 each.
    _, net, in_shape = net_for(["model=resnet18", "data=cifar10"])
    assert summarize(net, in_shape)["total_flops"] == pytest.approx(1.11e9, rel=0.01)


def test_num_classes_follows_the_data():
    cfg, net, in_shape = net_for(["model=lenet", "data=cifar100"])
    assert cfg.model.num_classes == 100
    assert net.out_shape(in_shape) == (100,)


@pytest.mark.parametrize(
    ("model", "norm"),
    [
        ("threelayer", "none"),
        ("deep", "none"),
        ("lenet", "none"),
        ("alexnet_lite", "lrn"),
        ("resnet18", "batch"),
        ("zfnet", "lrn"),
        ("vgg11", "none"),
        ("vgg16", "none"),
        ("nin", "none"),
        ("googlenet", "batch"),
        ("resnet34", "batch"),
        ("resnet50", "batch"),
        ("resnext50_32x4d", "batch"),
        ("se_resnet18", "batch"),
        ("densenet121", "batch"),
        ("mobilenet_v2", "batch"),
    ],
)
def test_norm_defaults_per_model(model, norm):
    assert compose("summary", [f"model={model}"]).norm.name == norm


NORM_TYPES = {"batch": BatchNorm, "layer": LayerNorm, "group": GroupNorm, "lrn": LRN}
# Models whose convs never have a bias, whatever the norm (the papers' ResNets and DenseNet).
NO_CONV_BIAS = {"resnet18", "resnet34", "resnet50", "resnext50_32x4d", "se_resnet18", "densenet121"}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("norm", ["none", "batch", "layer", "group", "lrn"])
def test_every_norm_fills_the_norm_slots_and_convs_lose_their_bias(model, norm):
    _, net, in_shape = net_for([f"model={model}", f"norm={norm}"])
    infos = list(leaves(net, in_shape))
    norms = [leaf for leaf in infos if isinstance(leaf.layer, tuple(NORM_TYPES.values()))]
    if norm == "none":
        assert not norms
    else:
        assert norms and all(isinstance(n.layer, NORM_TYPES[norm]) for n in norms)
    for before, after in itertools.pairwise(infos):
        if isinstance(before.layer, Conv2d) and isinstance(
            after.layer, (BatchNorm, LayerNorm, GroupNorm)
        ):
            assert not before.layer.bias, f"{before.name} has a bias before {after.name}"
    if model not in NO_CONV_BIAS:
        convs = [leaf for leaf in infos if isinstance(leaf.layer, Conv2d)]
        assert any(c.layer.bias for c in convs) == (
            norm in ("none", "lrn") or model in ("alexnet_lite", "zfnet")  # norm after the pool
        )


def test_groups_that_do_not_divide_channels_name_the_layer():
    with pytest.raises(ShapeError, match=r"norm1 .*5 groups do not divide 32 channels"):
        net_for(["model=threelayer", "norm=group", "norm.groups=5"])


def test_feature_maps_that_shrink_to_nothing_name_the_layer_and_shapes():
    with pytest.raises(ShapeError, match=r"pool6 .*\(128, 1, 1\).*0x0"):
        net_for(["model=deep", "model.pool_after=[0,1,2,3,4,5]"])


def test_bad_model_options_are_usage_errors():
    with pytest.raises(UsageError, match="resnet19: no such option; choose from alexnet_lite"):
        compose("summary", ["model=resnet19"])
    with pytest.raises(UsageError, match="stem"):
        net_for(["model=resnet18", "model.stem=tiny"])


# -- the same seed gives the same logits and gradients on every backend -------------------------

# Naive loops are slow: naive gets narrower widths and smaller images, the others the defaults.
SMALL = {"naive": (0.0625, 16), "im2col": (0.25, 32), "torch": (0.25, 32)}


def problem(model: str, width: float, size: int):
    """A model at the given width on (3, size, size) inputs, weights from seed 0, a batch of 2."""
    cfg = compose("summary", [f"model={model}", f"data.shape=[3,{size},{size}]"])
    size = max(size, cfg.model.min_size)  # never below what the model accepts (VGG: 32)
    in_shape = (3, size, size)
    net = build_net(cfg.model, cfg.norm, in_shape, width, cfg.act)
    rng = np.random.default_rng(0)
    params, buffers = init_state(net, in_shape, compose("gradcheck", []).init, rng)
    x = rng.standard_normal((2, *in_shape))
    y = rng.integers(0, cfg.model.num_classes, 2)
    return net, params, buffers, x, y


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("backend", ["naive", "im2col"])
def test_logits_and_gradients_agree_with_torch(model, backend):
    width, size = SMALL[backend]
    net, params, buffers, x, y = problem(model, width, size)
    results = {}
    for name in (backend, "torch"):
        m = BACKENDS[name].model(net, params, buffers)
        results[name] = m.loss(x, y, train=True, rng=np.random.default_rng(5))
    (loss, grads, logits), (t_loss, t_grads, t_logits) = results[backend], results["torch"]
    assert math.isfinite(loss) and abs(loss - t_loss) <= 1e-8 * abs(t_loss)
    assert rel_error(logits, t_logits) <= 1e-8
    assert grads.keys() == t_grads.keys() == params.keys()
    for name in grads:
        # compare(): a true gradient of zero (MobileNetV2's projection norms' beta, whose shift
        # the next norm removes) is rounding on both sides, judged by its size instead.
        assert compare(grads[name], t_grads[name]).passed(1e-8, 1e-12), name


@pytest.mark.parametrize("model", ["lenet", "resnet18"])
def test_only_the_first_conv_skips_its_input_gradient(monkeypatch, model):
    """Nothing reads the gradient of the net's input, so its first conv does not compute it."""
    from cnnlab.kernels.im2col import Im2col

    calls = []

    def spy_on(kernel):  # LeNet's convs run fused with their ReLUs on im2col
        backward = getattr(Im2col, kernel)

        def spy(self, dout, cache, need_dx=True):
            calls.append(need_dx)
            return backward(self, dout, cache, need_dx=need_dx)

        monkeypatch.setattr(Im2col, kernel, spy)

    spy_on("conv2d_backward")
    spy_on("conv2d_relu_backward")
    net, params, buffers, x, y = problem(model, 0.125, 16)
    BACKENDS["im2col"].model(net, params, buffers).loss(x, y, rng=np.random.default_rng(2))
    assert calls[-1] is False  # the backward meets the first conv last
    assert all(calls[:-1]) and len(calls) > 1


def test_naive_and_im2col_agree_on_a_full_width_model():
    net, params, buffers, x, y = problem("lenet", 1.0, 28)
    out = [
        BACKENDS[b].model(net, params, buffers).loss(x, y, rng=np.random.default_rng(1))
        for b in ("naive", "im2col")
    ]
    assert rel_error(out[0][2], out[1][2]) <= 1e-10
    for name in params:
        assert rel_error(out[0][1][name], out[1][1][name]) <= 1e-10


def test_batchnorm_running_statistics_agree_and_eval_uses_them():
    net, params, buffers, x, y = problem("resnet18", 0.0625, 16)
    models = {b: BACKENDS[b].model(net, params, buffers) for b in ("im2col", "torch")}
    for m in models.values():
        m.loss(x, y, train=True)
    evals = {b: m.loss(x, y, train=False, grads=False)[2] for b, m in models.items()}
    assert rel_error(evals["im2col"], evals["torch"]) <= 1e-10
    trained = {b: m.loss(x, y, train=True, grads=False)[2] for b, m in models.items()}
    assert rel_error(evals["im2col"], trained["im2col"]) > 1e-3  # eval really differs


def test_dropout_masks_are_the_same_on_every_backend():
    net, params, buffers, x, y = problem("alexnet_lite", 0.0625, 16)
    logits = [
        BACKENDS[b]
        .model(net, params, buffers)
        .loss(x, y, rng=np.random.default_rng(9), grads=False)[2]
        for b in ("naive", "im2col", "torch")
    ]
    assert rel_error(logits[0], logits[2]) <= 1e-10 and rel_error(logits[1], logits[2]) <= 1e-10
    other = (
        BACKENDS["torch"]
        .model(net, params, buffers)
        .loss(x, y, rng=np.random.default_rng(10), grads=False)[2]
    )
    assert rel_error(other, logits[2]) > 1e-3  # another seed, other masks


def test_a_shard_of_the_batch_gets_its_rows_of_the_dropout_masks():
    """A data-parallel rank holding rows 1..3 of a batch of 4 drops what one process would."""
    import torch

    from cnnlab.data.batches import Rows
    from cnnlab.nn.torch_net import TorchNet

    net, params, buffers, *_ = problem("alexnet_lite", 0.0625, 16)
    x = np.random.default_rng(3).standard_normal((4, 3, 16, 16))
    module = TorchNet(net, params, buffers).train()

    def forward(x: np.ndarray, rows: Rows) -> np.ndarray:
        masks = module.masks(np.random.default_rng(5), x.shape[1:], rows)
        return module(torch.as_tensor(x), masks, rows).detach().numpy()

    whole = forward(x, Rows(0, 4, 4))
    part = forward(x[1:], Rows(1, 4, 4))
    np.testing.assert_allclose(part, whole[1:], rtol=1e-12)
    # ... and not the masks of a batch of 3.
    alone = forward(x[1:], Rows(0, 3, 3))
    assert rel_error(alone, part) > 1e-3


def test_torch_parameters_carry_the_numpy_names():
    net, params, buffers, *_ = problem("resnet18", 0.0625, 16)
    module = BACKENDS["torch"].model(net, params, buffers).module
    assert set(dict(module.named_parameters())) == set(params)
    assert {n for n, _ in module.named_buffers()} == set(buffers)
    assert "layer2.0.block.shortcut.conv.w" in params


@pytest.mark.parametrize(
    "model",
    [
        "threelayer",
        "deep",
        "lenet",
        "alexnet_lite",
        "resnet18",
        "zfnet",
        "vgg16",
        "nin",
        "googlenet",
        "resnet50",
        "se_resnet18",  # SE's hidden layer too
        "densenet121",
    ],
)
def test_act_fills_every_activation_slot_of_a_model(model):
    from cnnlab.ops.activation import GELU, ReLU
    from cnnlab.ops.tree import leaves

    cfg = compose("summary", [f"model={model}", "act=gelu"])
    assert cfg.act.name == "gelu"
    shape = tuple(cfg.data.shape)
    layers = [
        leaf.layer for leaf in leaves(build_net(cfg.model, cfg.norm, shape, act=cfg.act), shape)
    ]
    assert any(isinstance(layer, GELU) for layer in layers)
    assert not any(isinstance(layer, ReLU) for layer in layers)
    relu = compose("summary", [f"model={model}"])  # each model's own default: relu
    plain = [
        leaf.layer for leaf in leaves(build_net(relu.model, relu.norm, shape, act=relu.act), shape)
    ]
    assert sum(isinstance(x, ReLU) for x in plain) == sum(isinstance(x, GELU) for x in layers)


@pytest.mark.parametrize("model", list(MODELS))
def test_min_size_is_the_smallest_input_the_model_accepts(model):
    cfg = compose("summary", [f"model={model}"])
    side = cfg.model.min_size
    build_net(cfg.model, cfg.norm, (3, side, side))
    if side > 1:
        with pytest.raises(ShapeError):
            build_net(cfg.model, cfg.norm, (3, side - 1, side - 1))


def test_model_gradcheck_never_runs_below_the_models_min_size():
    from cnnlab.gradcheck.model_check import make_problem

    cfg = compose("gradcheck", ["model=deep", "gradcheck.image_size=4", "gradcheck.batch_size=1"])
    assert make_problem(cfg).x.shape[2:] == (8, 8)
