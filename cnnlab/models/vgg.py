"""``vgg11`` and ``vgg16``: VGG's configurations A and D, stages of 3x3 convs and max pools.

Each stage of ``stages`` is conv 3x3 pad 1 – norm – act per width listed, then a 2x2 stride-2
max pool; A is ``[[64], [128], [256, 256], [512, 512], [512, 512]]``, D the same with two
convs in the first two stages and three in the last three. The paper's convs have a bias and no
norm (``norm=none``, the default); ``norm=batch`` gives VGG-BN, whose convs then lose their
bias (torchvision's ``vgg*_bn`` keep it, cancelled by the norm: 2,752 more parameters for
VGG-11, 4,224 for VGG-16).

Classifier (``model.stem``, named for the input size it is made for):

- ``cifar`` (default), for 32x32 inputs: the 512x1x1 map flattened into one linear layer,
  512 -> K (9,225,610 parameters for VGG-11, 14,719,818 for VGG-16, with 10 classes).
- ``imagenet``, the paper's for 224x224: adaptive average pool to 7x7, then linear 4096 – act
  – dropout – linear 4096 – act – dropout – linear K, as torchvision's (132,863,336 parameters
  for VGG-11, 138,357,544 for VGG-16, with 1000 classes).

Shape:
    x: (N, 3, H, W) with H, W >= 32 (each of the five pools halves them, rounding down) ->
    logits: (N, K).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cnnlab.models.blocks import Stem, act_layer, conv_norm_relu, scaled
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import AdaptiveAvgPool2d, MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class VGGConfig(ModelConfig):
    """Configuration A (``vgg11``); :class:`VGG16Config` is D."""

    name: str = "vgg11"
    stem: Stem = Stem.cifar
    # The conv widths of each stage; a max pool ends every stage.
    stages: list[list[int]] = field(
        default_factory=lambda: [[64], [128], [256, 256], [512, 512], [512, 512]]
    )
    hidden: list[int] = bounded_list(lambda: [4096, 4096], ge=1, length=2)  # imagenet only
    dropout: float = bounded(0.5, ge=0, lt=1)  # imagenet only

    @staticmethod
    def rule(cfg: VGGConfig) -> str | None:
        if not cfg.stages or not all(cfg.stages):
            return f"stages must be lists of conv widths, none empty, got {list(cfg.stages)}"
        if not all(w >= 1 for stage in cfg.stages for w in stage):
            return f"stages must hold widths >= 1, got {list(cfg.stages)}"
        return None


@dataclass
class VGG16Config(VGGConfig):
    name: str = "vgg16"
    stages: list[list[int]] = field(
        default_factory=lambda: [[64, 64], [128, 128], [256, 256, 256], [512] * 3, [512] * 3]
    )


def build(
    cfg: VGGConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """Convs ``conv<s>_<i>`` of stage s (from 1), pools ``pool<s>``, then the classifier."""
    children: list[tuple[str, Node]] = []
    for s, stage in enumerate(cfg.stages, start=1):
        for i, filters in enumerate(stage, start=1):
            children += conv_norm_relu(f"{s}_{i}", scaled(filters, width), 3, norm, pad=1, act=act)
        children.append((f"pool{s}", MaxPool2d(2)))
    if cfg.stem == "cifar":
        children += [("flatten", Flatten()), ("fc", Linear(cfg.num_classes))]
        return Sequential(tuple(children))
    kind, layer = act_layer(act)
    children += [("avgpool", AdaptiveAvgPool2d(7)), ("flatten", Flatten())]
    for i, hidden in enumerate(cfg.hidden, start=1):
        children += [
            (f"fc{i}", Linear(scaled(hidden, width))),
            (f"{kind}_fc{i}", layer),
            (f"drop{i}", Dropout(cfg.dropout)),
        ]
    children.append(("fc3", Linear(cfg.num_classes)))
    return Sequential(tuple(children))
