"""A torch training step never makes the host wait for the device: every read of a tensor's
value into Python (``.item()``, ``.cpu()``, ``.numpy()``, ``.tolist()``, a tensor in an ``if``
or a format string, ``torch.cuda.synchronize``) happens at a log point, not inside the steps
between two of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.progress import Progress
from torch.overrides import TorchFunctionMode

from cnnlab.backends import BackendOptions, get_backend
from cnnlab.config import compose
from cnnlab.data import load
from cnnlab.models import INIT_STREAM, instantiate
from cnnlab.train.engine import make_engine
from cnnlab.train.loop import LoopState, Trainer

T = torch.Tensor
HOST_READS = {
    T.item,
    T.cpu,
    T.numpy,
    T.tolist,
    T.__bool__,
    T.__float__,
    T.__int__,
    T.__index__,
    T.__repr__,
    T.__format__,
}
# AlexNet-lite has dropout (masks drawn each step) and batches are augmented: every per-step
# draw is on the path.
RUN = [
    "backend=torch",
    "model=alexnet_lite",
    "model.filters=[4,8,8,8,8]",
    "model.hidden=[16,16]",
    "data.train_size=130",
    "data.test_size=20",
    "data.augment=true",
    "trainer.batch_size=10",
    "trainer.log_every=4",
    "trainer.epochs=2",
    "trainer.threads=1",
]


class HostReads(TorchFunctionMode):
    """Records each read of a tensor's value into Python, and whether the loop was at a log
    point (``at``) when it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.at: str | None = None
        self.inside: list[str] = []  # reads inside steps
        self.logged: list[str] = []  # reads at log points

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS or (func is T.to and "cpu" in map(str, [*args[1:], kwargs])):
            (self.inside if self.at is None else self.logged).append(func.__name__)
        return func(*args, **(kwargs or {}))


class Board:
    """A TensorBoard writer that keeps what it is given."""

    def __init__(self) -> None:
        self.steps: list[int] = []  # the steps of the per-step training points

    def scalar(self, tag, value, step):
        self.scalars({tag: value}, step)

    def scalars(self, values, step):
        if "train/loss_step" in values:
            self.steps.append(step)

    def histogram(self, tag, values, step): ...
    def image(self, tag, image, step): ...
    def flush(self): ...


def trainer(tmp_path, *overrides: str, options: BackendOptions | None = None) -> Trainer:
    tmp_path.mkdir(exist_ok=True)
    cfg = compose("train", [*RUN, *overrides])
    data = load(cfg.data, 0, np.float32)
    rng = np.random.default_rng([0, INIT_STREAM])
    model = instantiate(cfg.model, cfg.norm, cfg.init, (3, 32, 32), rng, np.float32, act=cfg.act)
    engine = make_engine(
        get_backend("torch"), model, cfg.optim, options=options or BackendOptions()
    )
    return Trainer(cfg, data, engine, tmp_path, Board(), LoopState())


def watched(run: Trainer, reads: HostReads) -> Trainer:
    """Marks the loop's log points (the sync of pending steps, evaluation, checkpoints, the
    augmented samples written once before the first step)."""
    for name in ("_sync", "evaluate", "save", "_tensorboard", "_augment_samples"):
        real = getattr(run, name)

        def at_log_point(*args, _real=real, _name=name, **kwargs):
            outer, reads.at = reads.at, _name
            try:
                return _real(*args, **kwargs)
            finally:
                reads.at = outer

        setattr(run, name, at_log_point)
    return run


@pytest.mark.parametrize("rng", ["numpy", "device"])
def test_no_host_reads_inside_training_steps(tmp_path, monkeypatch, rng):
    synchronized = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: synchronized.append(1))
    reads = HostReads()
    run = watched(trainer(tmp_path, options=BackendOptions(threads=1, rng=rng)), reads)
    with reads, Progress(disable=True) as progress:
        outcome = run.run("config", progress)
    assert outcome.status == "completed" and run.state.step == run.total_steps == 24
    assert reads.inside == [] and synchronized == []
    assert "cpu" in reads.logged or "numpy" in reads.logged  # the reads happen, where they should
    # Every 4th step's loss still reaches TensorBoard.
    assert run.tb.steps == [4, 8, 12, 16, 20, 24]


def test_a_read_inside_a_step_is_caught(tmp_path):
    """The counter itself: an engine that reads its loss each step is found out."""
    reads = HostReads()
    run = watched(trainer(tmp_path, options=BackendOptions(threads=1)), reads)
    step = run.engine.train_step
    run.engine.train_step = lambda *a, **k: (lambda s: (float(s.loss), s)[1])(step(*a, **k))
    with reads, Progress(disable=True) as progress:
        run.run("config", progress)
    assert reads.inside.count("__float__") == run.total_steps


def test_deferred_reads_give_the_numbers_of_a_step_by_step_loop(tmp_path):
    """Fetching at log points changes nothing: the same epoch metrics as reading every step."""
    lazy = trainer(tmp_path / "lazy", options=BackendOptions(threads=1))
    eager = trainer(tmp_path / "eager", options=BackendOptions(threads=1))
    eager.sync_every = 1
    for run in (lazy, eager):
        with Progress(disable=True) as progress:
            run.run("config", progress)
    untimed = [
        [
            {k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "time_s")}
            for line in r.metrics_path.read_text().splitlines()
        ]
        for r in (lazy, eager)
    ]
    assert len(untimed[0]) == 2 and untimed[0] == untimed[1]
