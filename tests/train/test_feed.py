"""Batches on a torch device are the numpy backends' batches, and ``trainer.rng=device``
resumes bit for bit."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from rich.progress import Progress

from cnnlab.backends import BackendOptions
from cnnlab.data.augment import Crops, apply_crops, draw_crops
from cnnlab.data.batches import Rows
from cnnlab.train.checkpoint import read
from cnnlab.train.draws import DeviceDraws
from cnnlab.train.feed import NumpyFeed, TorchFeed, crop_tensor
from cnnlab.train.loop import LoopState, Trainer
from tests.train.test_sync import trainer


@pytest.mark.parametrize(("pad", "flip"), [(4, True), (0, True), (2, False), (0, False), (1, True)])
@pytest.mark.parametrize("shape", [(9, 3, 8, 7), (1, 1, 5, 5)])
def test_crops_on_a_device_are_numpys(pad, flip, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    crops = draw_crops(np.random.default_rng(1), pad, flip, Rows(0, shape[0], shape[0]))
    placed = [
        None if a is None else torch.from_numpy(a) for a in (crops.dy, crops.dx, crops.mirror)
    ]
    got = crop_tensor(torch.from_numpy(x), Crops(pad, *placed)).numpy()
    np.testing.assert_array_equal(got, apply_crops(x, crops))


def test_a_torch_feed_takes_the_numpy_feeds_batches():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((40, 3, 6, 6)).astype(np.float32), rng.integers(0, 5, 40)
    index = rng.permutation(40)[:12]
    crops = draw_crops(np.random.default_rng(3), 2, True, Rows(0, 12, 12))
    host = NumpyFeed(x, y).take(index, crops)
    feed = TorchFeed(x, y, torch.device("cpu"))
    device = feed.take(feed.place(index), crops)
    for a, b in zip(host, device, strict=True):
        np.testing.assert_array_equal(b.numpy(), a)


def test_device_draws_depend_only_on_the_position():
    a, b = DeviceDraws(7, torch.device("cpu")), DeviceDraws(7, torch.device("cpu"))
    rows = Rows(0, 16, 16)
    b.order(100, 3)  # b's generator has moved on; re-seeding from the position undoes that
    assert torch.equal(a.order(100, 1), b.order(100, 1))
    ca, cb = a.crops(1, 5, 4, True, rows), b.crops(1, 5, 4, True, rows)
    assert all(
        torch.equal(u, v)
        for u, v in zip((ca.dy, ca.dx, ca.mirror), (cb.dy, cb.dx, cb.mirror), strict=True)
    )
    assert not torch.equal(a.order(100, 1), a.order(100, 2))
    # A shard is the whole batch's draws cut to its rows.
    half = a.crops(1, 5, 4, True, Rows(8, 16, 16))
    assert torch.equal(half.dy, ca.dy[8:]) and torch.equal(half.mirror, ca.mirror[8:])


def _finish(run: Trainer) -> dict[str, np.ndarray]:
    with Progress(disable=True) as progress:
        outcome = run.run("config", progress)
    assert outcome.status == "completed", outcome.message
    return run.engine.state()


def test_a_device_rng_run_interrupted_and_resumed_ends_bit_identical(tmp_path):
    options = BackendOptions(threads=1, rng="device")
    whole = _finish(trainer(tmp_path / "whole", options=options))

    cut = trainer(tmp_path / "cut", "trainer.checkpoint_every_steps=5", options=options)
    step = cut.engine.train_step

    def stopped_after_seven(*args, **kwargs):
        done = step(*args, **kwargs)
        if cut.state.step == 6:  # counted before the step: SIGINT arrives during step 7
            cut.stop.signum = signal.SIGINT
        return done

    cut.engine.train_step = stopped_after_seven
    with Progress(disable=True) as progress:
        assert cut.run("config", progress).status == "interrupted"
    saved = read(tmp_path / "cut" / "checkpoints" / "last.npz", "trainer.resume")
    assert saved.meta["loop"]["step"] == 7 and saved.meta["loop"]["position"] == 7

    resumed = trainer(tmp_path / "resumed", "trainer.checkpoint_every_steps=5", options=options)
    resumed.engine.load_state(saved.state)
    resumed.state = LoopState(**saved.meta["loop"])
    ended = _finish(resumed)
    assert ended.keys() == whole.keys()
    for key, value in whole.items():
        np.testing.assert_array_equal(ended[key], value, err_msg=key)

    numpy_rng = _finish(trainer(tmp_path / "numpy", options=BackendOptions(threads=1)))
    assert not np.array_equal(numpy_rng["param/fc3.w"], whole["param/fc3.w"])
