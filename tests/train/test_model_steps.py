"""Every architecture takes real training steps on a numpy and on the torch backend: the
training loop on the built-in shapes data, at an eighth of its widths (``cnnlab train`` has no
width option, so the loop is driven as the command drives it, on an instance built narrower)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.progress import Progress

from cnnlab.backends import BackendOptions, get_backend
from cnnlab.config import compose
from cnnlab.data import load
from cnnlab.models import INIT_STREAM, MODELS, instantiate
from cnnlab.train.engine import make_engine
from cnnlab.train.loop import LoopState, Trainer

RUN = [
    "data.train_size=40",
    "data.test_size=8",
    "trainer.batch_size=8",
    "trainer.max_steps=2",
    "trainer.epochs=1",
    "trainer.threads=1",
]


class Board:
    """A TensorBoard writer that drops what it is given."""

    def scalar(self, tag, value, step): ...
    def scalars(self, values, step): ...
    def histogram(self, tag, values, step): ...
    def image(self, tag, image, step): ...
    def flush(self): ...


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("backend", ["im2col", "torch"])
def test_model_takes_training_steps(tmp_path, model, backend):
    cfg = compose("train", [f"backend={backend}", f"model={model}", *RUN])
    data = load(cfg.data, 0, np.float32)
    rng = np.random.default_rng([0, INIT_STREAM])
    shape = tuple(cfg.data.shape)
    net = instantiate(cfg.model, cfg.norm, cfg.init, shape, rng, np.float32, 0.125, cfg.act)
    before = {name: p.copy() for name, p in net.params.items()}
    engine = make_engine(get_backend(backend), net, cfg.optim, options=BackendOptions(threads=1))
    run = Trainer(cfg, data, engine, tmp_path, Board(), LoopState())
    with Progress(disable=True) as progress:
        outcome = run.run("config", progress)
    assert outcome.status == "completed" and outcome.state.step == 2
    (epoch,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(epoch["train_loss"]) and math.isfinite(epoch["val_loss"])
    after = engine.params()
    assert after.keys() == before.keys()
    unchanged = [name for name in before if np.array_equal(after[name], before[name])]
    assert not unchanged  # every parameter was updated
