"""``googlenet``: GoogLeNet (Inception v1, Szegedy et al., 2015) with a norm after every conv
(batch norm by default, as torchvision's), and no auxiliary classifiers.

An Inception module is a :class:`Concat` of four branches that all see its input, each conv
followed by norm – act (and without a bias before batch norm)::

    branch1: 1x1 conv (#1x1)
    branch2: 1x1 conv (#3x3 reduce) – 3x3 conv pad 1 (#3x3)
    branch3: 1x1 conv (#5x5 reduce) – 5x5 conv pad 2 (#5x5)
    branch4: 3x3 max pool stride 1 pad 1 – 1x1 conv (pool proj)
    out: their outputs stacked along channels, #1x1 + #3x3 + #5x5 + pool proj

Modules 3a, 3b – max pool – 4a to 4e – max pool – 5a, 5b with the widths of the paper's
Table 1 (3a: 64, 96-128, 16-32, 32 -> 256 channels; ... 5b: 384, 192-384, 48-128, 128 ->
1024), then global average pool – dropout (``model.dropout``, the paper's 0.4) – linear K.
The max pools between stages are 3x3 stride 2 with ``ceil_mode``. ``model.modules`` lists the
modules' widths (a row of Table 1 each) and ``model.pool_before`` the modules a pool precedes
(from 0; 2 and 7), so a shallower GoogLeNet is a config away.

``model.variant``:

- ``paper`` (default): branch3's 5x5 conv as in the paper.
- ``torchvision``: torchvision's GoogLeNet, whose branch3 has a 3x3 conv (pad 1) where the
  paper has 5x5, and whose pool before 5a is 2x2 stride 2 (same output size). With
  ``stem=imagenet`` and 1000 classes it has torchvision's 6,624,904 parameters
  (``model.dropout=0.2`` is torchvision's dropout too).

``model.stem``:

- ``imagenet``, for 224x224: conv 64@7x7 stride 2 pad 3 – max pool – conv 64@1x1 – conv
  192@3x3 pad 1 – max pool, so the modules see 28x28, 14x14 and 7x7 maps. The paper's two
  local response norms are left out (the norm after each conv takes their place).
  7,005,832 parameters with 1000 classes (``paper``), 6,624,904 (``torchvision``).
- ``cifar`` (default), for 32x32: conv1 3x3 stride 1 pad 1 and no max pool before 3a, so the
  modules see 32x32, 16x16 and 8x8 maps. 5,983,402 parameters with 10 classes (``paper``),
  5,602,474 (``torchvision``).

Shape:
    x: (N, 3, H, W) with H, W >= 4 (cifar; imagenet 31; 2 and 15 with
    ``variant=torchvision``) -> logits: (N, K).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cnnlab.choice import Choice
from cnnlab.models.blocks import Stem, conv_norm_relu, scaled
from cnnlab.ops.dropout import Dropout
from cnnlab.ops.linear import Linear
from cnnlab.ops.pool import GlobalAvgPool, MaxPool2d
from cnnlab.ops.structure import Concat, Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


class Variant(Choice):
    """``paper``: branch3 a 5x5 conv; ``torchvision``: a 3x3 there, and a 2x2 pool before 5a."""

    paper = "paper"
    torchvision = "torchvision"


# The paper's Table 1, one row per module 3a, 3b, 4a, ..., 5b: #1x1, #3x3 reduce, #3x3,
# #5x5 reduce, #5x5, pool proj.
TABLE_1 = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


@dataclass
class GoogLeNetConfig(ModelConfig):
    name: str = "googlenet"
    stem: Stem = Stem.cifar
    variant: Variant = Variant.paper
    # The modules' widths, one row of Table 1 each, and the modules (from 0) that a stride-2
    # max pool comes before: 4a and 5a.
    modules: list[list[int]] = field(default_factory=lambda: [list(row) for row in TABLE_1])
    pool_before: list[int] = bounded_list(lambda: [2, 7], ge=0)
    dropout: float = bounded(0.4, ge=0, lt=1)

    @staticmethod
    def rule(cfg: GoogLeNetConfig) -> str | None:
        if not cfg.modules or any(len(m) != 6 or min(m) < 1 for m in cfg.modules):
            return (
                "modules must be rows of six widths >= 1 (#1x1, #3x3 reduce, #3x3, #5x5 reduce, "
                f"#5x5, pool proj), got {list(cfg.modules)}"
            )
        pools = list(cfg.pool_before)
        if pools != sorted(set(pools)) or pools[-1:] >= [len(cfg.modules)]:
            return (
                f"pool_before must be increasing indices of modules (0 to {len(cfg.modules) - 1}), "
                f"got {pools}"
            )
        return None


def inception(
    widths: tuple[int, ...],
    branch3_kernel: int,
    norm: NormConfig,
    act: ActConfig | None = None,
) -> Concat:
    """The four branches for ``widths`` (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool
    proj), branch3's second conv ``branch3_kernel`` square (5 in the paper)."""
    n1, r3, n3, r5, n5, proj = widths

    def branch(*layers: list[tuple[str, Node]]) -> Sequential:
        return Sequential(tuple(child for layer in layers for child in layer))

    return Concat(
        (
            ("branch1", branch(conv_norm_relu("1", n1, 1, norm, act=act))),
            (
                "branch2",
                branch(
                    conv_norm_relu("1", r3, 1, norm, act=act),
                    conv_norm_relu("2", n3, 3, norm, pad=1, act=act),
                ),
            ),
            (
                "branch3",
                branch(
                    conv_norm_relu("1", r5, 1, norm, act=act),
                    conv_norm_relu("2", n5, branch3_kernel, norm, pad=branch3_kernel // 2, act=act),
                ),
            ),
            (
                "branch4",
                branch([("pool", MaxPool2d(3, 1, 1))], conv_norm_relu("1", proj, 1, norm, act=act)),
            ),
        )
    )


def build(
    cfg: GoogLeNetConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """Stem, modules ``inception3a`` ... ``inception5b`` with pools ``pool3`` and ``pool4``
    before 4a and 5a, then ``pool`` (global average), ``drop`` and ``fc``. Each pool starts a
    stage: the modules are named by stage (from 3) and letter."""
    torchvision = cfg.variant == "torchvision"
    if cfg.stem == "imagenet":
        children: list[tuple[str, Node]] = [
            *conv_norm_relu("1", scaled(64, width), 7, norm, 2, 3, act=act),
            ("pool1", MaxPool2d(3, 2, ceil_mode=True)),
            *conv_norm_relu("2", scaled(64, width), 1, norm, act=act),
            *conv_norm_relu("3", scaled(192, width), 3, norm, pad=1, act=act),
            ("pool2", MaxPool2d(3, 2, ceil_mode=True)),
        ]
    else:
        children = [
            *conv_norm_relu("1", scaled(64, width), 3, norm, pad=1, act=act),
            *conv_norm_relu("2", scaled(64, width), 1, norm, act=act),
            *conv_norm_relu("3", scaled(192, width), 3, norm, pad=1, act=act),
        ]
    stage, letter = 3, "a"
    for i, widths in enumerate(cfg.modules):
        if i in cfg.pool_before:
            # torchvision's last pool is 2x2 (the same output size as 3x3 on 14x14).
            kernel = 2 if torchvision and i == cfg.pool_before[-1] else 3
            children.append((f"pool{stage}", MaxPool2d(kernel, 2, ceil_mode=True)))
            stage, letter = stage + 1, "a"
        module = inception(
            tuple(scaled(w, width) for w in widths), 3 if torchvision else 5, norm, act
        )
        children.append((f"inception{stage}{letter}", module))
        letter = chr(ord(letter) + 1)
    children += [
        ("pool", GlobalAvgPool()),
        ("drop", Dropout(cfg.dropout)),
        ("fc", Linear(cfg.num_classes)),
    ]
    return Sequential(tuple(children))
