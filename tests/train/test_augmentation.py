"""data.transforms in training: the numpy and torch feeds give the same images, a run trains
the same on im2col and torch, and its first augmented batch reaches TensorBoard."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from rich.progress import Progress
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.backends import BackendOptions, get_backend
from cnnlab.config import compose
from cnnlab.data import load
from cnnlab.data.augment import TRANSFORMS, Crops
from cnnlab.data.batches import Rows
from cnnlab.errors import UsageError
from cnnlab.models import INIT_STREAM, instantiate
from cnnlab.train.draws import DeviceDraws, NumpyDraws
from cnnlab.train.engine import make_engine
from cnnlab.train.feed import NumpyFeed, TorchFeed
from cnnlab.train.loop import LoopState, Trainer
from cnnlab.train.tensorboard import TensorBoardWriter, sample_grid
from tests.data.conftest import MEAN, STD, strengths


@pytest.mark.parametrize(
    "names",
    [tuple(TRANSFORMS), ("color", "rotate"), ("scale",), ("crop", "flip"), ("flip", "crop")],
)
@pytest.mark.parametrize("rows", [Rows(0, 12, 12), Rows(4, 12, 12)])
def test_a_torch_feed_takes_the_numpy_feeds_augmented_batches(names, rows):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((40, 3, 9, 8)).astype(np.float32), rng.integers(0, 5, 40)
    index = rng.permutation(40)[:12][rows.slice]
    steps = NumpyDraws(3).augment(1, 5, strengths(*names), rows)
    host = NumpyFeed(x, y).take(index, steps)
    feed = TorchFeed(x, y, torch.device("cpu"))
    device = feed.take(feed.place(index), steps)
    for a, b in zip(host, device, strict=True):
        np.testing.assert_array_equal(b.numpy(), a)
    assert not np.array_equal(host[0], x[index])


def test_device_draws_of_crop_then_flip_are_its_crops_and_refuse_the_rest():
    draws, rows = DeviceDraws(7, torch.device("cpu")), Rows(0, 16, 16)
    (step,) = draws.augment(1, 5, strengths("crop", "flip"), rows)
    crops = draws.crops(1, 5, 2, True, rows)
    assert isinstance(step, Crops)
    for a, b in zip(
        (step.dy, step.dx, step.mirror), (crops.dy, crops.dx, crops.mirror), strict=True
    ):
        assert torch.equal(a, b)
    with pytest.raises(UsageError, match=r"trainer\.rng=device draws crop and flip only"):
        draws.augment(1, 5, strengths("crop", "rotate"), rows)


@pytest.mark.parametrize(("n", "c", "shape"), [(32, 3, (202, 202, 3)), (5, 1, (30, 46))])
def test_a_sample_grid_undoes_the_normalisation_and_reads_back_at_its_size(tmp_path, n, c, shape):
    mean, std = MEAN[:c], STD[:c]
    x = np.zeros((n, c, 32 if c == 3 else 14, 32 if c == 3 else 14), np.float32)
    x[0] = ((1.0 - mean) / std)[:, None, None]  # the first image white
    grid = sample_grid(x, mean, std)
    assert grid.shape == shape
    np.testing.assert_allclose(grid[0, 0], 1.0, rtol=1e-6)  # white
    np.testing.assert_allclose(grid[-1, 0], mean if c == 3 else mean[0], rtol=1e-6)  # x = 0
    with TensorBoardWriter(tmp_path) as tb:
        tb.image("augment/samples", grid, 0)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    (event,) = events.Images("augment/samples")
    assert (event.step, event.height, event.width) == (0, *shape[:2])


def trained(backend: str, run_dir, tb, *overrides: str) -> dict[str, np.ndarray]:
    """What three steps of batch 8, in float64, with every transform, change each parameter
    by."""
    cfg = compose(
        "train",
        [
            f"backend={backend}",
            "data.augment=true",
            "data.transforms=[crop,flip,rotate,scale,color]",
            "data.train_size=60",
            "data.test_size=20",
            "model.filters=4",
            "model.hidden=16",
            "trainer.batch_size=8",
            "trainer.max_steps=3",
            "trainer.epochs=1",
            "trainer.checkpoints=false",
            *overrides,
        ],
    )
    data = load(cfg.data, 0, np.float64)
    rng = np.random.default_rng([0, INIT_STREAM])
    model = instantiate(cfg.model, cfg.norm, cfg.init, (3, 32, 32), rng, np.float64, act=cfg.act)
    options = BackendOptions(threads=1, precision="64-true")
    engine = make_engine(get_backend(backend), model, cfg.optim, options=options)
    run = Trainer(cfg, data, engine, run_dir, tb, LoopState())
    before = {k: np.array(v) for k, v in engine.params().items()}
    with Progress(disable=True) as progress:
        outcome = run.run("config", progress)
    assert outcome.status == "completed" and run.state.step == 3, outcome.message
    return {k: v - before[k] for k, v in engine.params().items()}


def test_a_run_with_every_transform_trains_the_same_on_im2col_and_torch(tmp_path):
    """The same images reach both backends: their updates over 3 steps agree to float64
    rounding (about 1e-15; leaving color out changes them by 10%). The run's first 8
    augmented images are in TensorBoard at step 0."""
    with TensorBoardWriter(tmp_path / "im2col") as tb:
        im2col = trained("im2col", tmp_path / "im2col", tb)
    with TensorBoardWriter(tmp_path / "torch") as tb:
        on_torch = trained("torch", tmp_path / "torch", tb)
    assert im2col.keys() == on_torch.keys()
    for key, value in on_torch.items():
        got = im2col[key]
        rel = np.linalg.norm(got - value) / (np.linalg.norm(got) + np.linalg.norm(value))
        assert rel <= 1e-10, (key, rel)

    for backend in ("im2col", "torch"):
        events = EventAccumulator(str(tmp_path / backend), size_guidance={"images": 0})
        events.Reload()
        (event,) = events.Images("augment/samples")
        # 8 images of 32x32 in 3 columns and 3 rows, 2 white pixels apart.
        assert (event.step, event.height, event.width) == (0, 100, 100)
        image = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        assert image.shape == (100, 100, 3) and (image[:, 32:34] == 255).all()
