"""``model.pool_ties``: one key sets the tie rule of every max pool of any model, and the
executors route the gradient by it."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnlab.backends import BACKENDS, BackendOptions
from cnnlab.compare import rel_error
from cnnlab.config import compose
from cnnlab.models import MODELS, build_net, init_state
from cnnlab.ops.pool import MaxPool2d
from cnnlab.ops.tree import leaves
from cnnlab.schema import norm_node


def max_pools(model: str, ties: str | None) -> list[MaxPool2d]:
    """The max pools of ``model`` at its defaults (``pool_ties`` set unless None), on 32x32."""
    keys = {} if ties is None else {"pool_ties": ties}
    cfg = OmegaConf.structured(MODELS[model].schema(**keys))
    net = build_net(cfg, OmegaConf.structured(norm_node("none", None)), (3, 32, 32))
    return [leaf.layer for leaf in leaves(net, (3, 32, 32)) if isinstance(leaf.layer, MaxPool2d)]


@pytest.mark.parametrize("ties", [None, "first", "all"])
def test_the_rule_reaches_every_max_pool_of_every_model(ties):
    found = 0
    for model in MODELS:
        pools = max_pools(model, ties)
        assert all(p.ties == (ties or "first") for p in pools), model
        found += len(pools)
    assert found >= 8  # threelayer 1, lenet 2, deep 3, alexnet_lite 3 at the least


def test_an_unknown_rule_is_a_usage_error():
    from cnnlab.errors import UsageError

    with pytest.raises(UsageError, match="choose from first, all"):
        compose("summary", ["model=lenet", "model.pool_ties=some"])


def gradients(ties: str, backend: str) -> dict[str, np.ndarray]:
    """asu_lab4's net on a constant image, where every 2x2 window of a channel ties (float64).

    Winograd's algorithm is off: it computes the outputs of a tile in different ways, which
    leaves tied maxima apart by a rounding and so changes which maxima tie."""
    cfg = compose("train", ["model=asu_lab4", f"model.pool_ties={ties}"])
    net = build_net(cfg.model, cfg.norm, (3, 32, 32))
    params, buffers = init_state(net, (3, 32, 32), cfg.init, np.random.default_rng(0))
    x = np.ones((2, 3, 32, 32))
    model = BACKENDS[backend].model(net, params, buffers, BackendOptions(winograd=False))
    _, grads, _ = model.loss(x, np.array([0, 1]), train=True, rng=np.random.default_rng(1))
    return grads


def test_every_tied_maximum_gets_the_gradient_on_numpy_and_torch_alike():
    first, every = gradients("first", "im2col"), gradients("all", "im2col")
    assert rel_error(first["conv1.w"], every["conv1.w"]) > 0.1
    torch = gradients("all", "torch")
    assert all(rel_error(every[k], torch[k]) < 1e-10 for k in every)
