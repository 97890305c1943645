"""The architectures: one file each, written once against the layer kinds of :mod:`cnnlab.ops`.

:data:`MODELS` maps ``model=<name>`` to its builder and config schema; :func:`build_net` is the
one place that turns the composed config into a layer tree, and :func:`init_state` draws its
weights from the seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import ShapeError, UsageError
from cnnlab.init import init_params
from cnnlab.kernels.choices import Ties
from cnnlab.models import (
    alexnet,
    deep,
    densenet,
    googlenet,
    lenet,
    mobilenet,
    nin,
    resnet,
    threelayer,
    vgg,
    zfnet,
)
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.registry import replace_leaves
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import Layer, Shape, buffer_specs, leaves, param_specs

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, InitConfig, ModelConfig, NormConfig


@dataclass(frozen=True)
class Model:
    build: Callable[..., Sequential]
    schema: type


MODELS: dict[str, Model] = {
    "threelayer": Model(threelayer.build, threelayer.ThreeLayerConfig),
    "deep": Model(deep.build, deep.DeepConfig),
    "lenet": Model(lenet.build, lenet.LeNetConfig),
    "alexnet_lite": Model(alexnet.build, alexnet.AlexNetConfig),
    "resnet18": Model(resnet.build, resnet.ResNetConfig),
    "resnet34": Model(resnet.build, resnet.ResNet34Config),
    "resnet50": Model(resnet.build, resnet.ResNet50Config),
    "resnext50_32x4d": Model(resnet.build, resnet.ResNeXt50Config),
    "se_resnet18": Model(resnet.build, resnet.SEResNet18Config),
    "densenet121": Model(densenet.build, densenet.DenseNetConfig),
    "mobilenet_v2": Model(mobilenet.build, mobilenet.MobileNetV2Config),
    "zfnet": Model(zfnet.build, zfnet.ZFNetConfig),
    "vgg11": Model(vgg.build, vgg.VGGConfig),
    "vgg16": Model(vgg.build, vgg.VGG16Config),
    "nin": Model(nin.build, nin.NiNConfig),
    "googlenet": Model(googlenet.build, googlenet.GoogLeNetConfig),
}


def build_net(
    model: ModelConfig,
    norm: NormConfig,
    in_shape: Shape,
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """The layer tree of ``model`` with ``norm`` in its norm slots, for inputs of ``in_shape``.

    Checks every layer's shapes now, so an impossible combination (feature maps that shrink to
    nothing, groups that do not divide channels) is one ShapeError naming the layer and shapes
    before anything runs.
    """
    if model.name not in MODELS:
        raise UsageError(f"model={model.name}: no such model; choose from {', '.join(MODELS)}")
    net = MODELS[model.name].build(model, norm, tuple(in_shape), width, act)
    # Configs saved before model.pool_ties existed lack it: PyTorch's rule, as they ran.
    net = _with_pool_ties(net, getattr(model, "pool_ties", Ties.first))
    try:
        for _ in leaves(net, tuple(in_shape)):
            pass
    except ShapeError as exc:
        raise ShapeError(f"model={model.name} on input {tuple(in_shape)}: {exc}") from None
    return net


def _with_pool_ties(net: Sequential, ties: str) -> Sequential:
    """``net`` with every max pool's tie rule set to ``ties`` (``model.pool_ties``): set here,
    for every architecture, so that no model file has to pass it to its pools."""
    rule = Ties(ties)

    def tie(layer: Layer) -> Layer:
        return dataclasses.replace(layer, ties=rule) if isinstance(layer, MaxPool2d) else layer

    return replace_leaves(net, tie)  # type: ignore[return-value]


# A run's initial weights are drawn from default_rng([trainer.seed, INIT_STREAM]): the same
# weights wherever the run's model is rebuilt (train, eval, bench model).
INIT_STREAM = 0


@dataclass(frozen=True)
class Instance:
    """A model ready to run: its layer tree for inputs of ``in_shape`` and its initial
    parameters and buffers (numpy arrays, copied into whichever backend runs it)."""

    net: Sequential
    in_shape: Shape
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]


def instantiate(
    model: ModelConfig,
    norm: NormConfig,
    init: InitConfig,
    in_shape: Shape,
    rng: np.random.Generator,
    dtype: np.dtype | type = np.float64,
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Instance:
    """The net of ``model`` (widths times ``width``) with weights drawn by ``init`` from
    ``rng``: what train, eval, ``bench model`` and ``gradcheck model=`` all start from."""
    net = build_net(model, norm, in_shape, width, act)
    params, buffers = init_state(net, in_shape, init, rng, dtype)
    return Instance(net, tuple(in_shape), params, buffers)


def init_state(
    net: Sequential,
    in_shape: Shape,
    init: InitConfig,
    rng: np.random.Generator,
    dtype: np.dtype | type = np.float64,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Initial parameters (drawn by ``init``'s scheme, in execution order) and buffers."""
    specs = param_specs(net, tuple(in_shape))
    # Configs saved before init.std existed lack it.
    params = init_params(specs, init.name, init.distribution, rng, dtype, init.get("std"))
    buffers = {
        b.name: np.full(b.shape, b.fill, dtype=dtype) for b in buffer_specs(net, tuple(in_shape))
    }
    return params, buffers
