"""``deep``: L blocks of conv 3x3 pad 1 – norm – ReLU – (maxpool 2 where listed), then linear K."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.models.blocks import conv_norm_relu, scaled
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.structure import Sequential
from cnnlab.ops.tree import Node
from cnnlab.schema import ModelConfig, bounded_list

if TYPE_CHECKING:
    from cnnlab.schema import ActConfig, NormConfig


@dataclass
class DeepConfig(ModelConfig):
    name: str = "deep"
    filters: list[int] = bounded_list(lambda: [32, 32, 64, 64, 128, 128], ge=1)
    pool_after: list[int] = bounded_list(lambda: [1, 3, 5], ge=0)  # block indices, from 0

    @staticmethod
    def rule(cfg: DeepConfig) -> str | None:
        bad = [i for i in cfg.pool_after if i >= len(cfg.filters)]
        if bad:
            return f"pool_after: block {bad[0]} does not exist ({len(cfg.filters)} blocks, from 0)"
        return None


def build(
    cfg: DeepConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    width: float = 1.0,
    act: ActConfig | None = None,
) -> Sequential:
    """One block per entry of ``filters``; a 2x2 max pool after each block in ``pool_after``."""
    children: list[tuple[str, Node]] = []
    for i, filters in enumerate(cfg.filters, start=1):
        children += conv_norm_relu(str(i), scaled(filters, width), 3, norm, pad=1, act=act)
        if i - 1 in cfg.pool_after:
            children.append((f"pool{i}", MaxPool2d(2)))
    children += [("flatten", Flatten()), ("fc", Linear(cfg.num_classes))]
    return Sequential(tuple(children))
