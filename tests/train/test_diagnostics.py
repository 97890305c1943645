"""Seeing what was learned (cnnlab.train.diagnostics): the pictures a finished run and
``cnnlab eval diagnostics=true`` write, read back from TensorBoard's events and the PNGs, and
the activations and saliency maps each backend computes, against torch in float64."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.backends import get_backend
from cnnlab.config import compose
from cnnlab.models import build_net, instantiate
from cnnlab.train.diagnostics import LABEL_PX, MAX_MISCLASSIFIED, conv_stages, saliency
from cnnlab.train.engine import make_engine
from tests.cli import TINY, run_cnnlab

PAD, GREY = 2, 128


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny run on a numpy and a torch backend (shapes: 3x32x32, 6 classes), in one sweep."""
    root = tmp_path_factory.mktemp("diagnostics")
    result = run_cnnlab("train", "-m", *TINY, "backend=im2col,torch", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    found = sorted(p for p in (root / "multirun").glob("*/*/*") if (p / "results.json").is_file())
    assert len(found) == 2
    return found


def images(logdir) -> dict[str, list]:
    """Every image event of logdir's event file, by tag."""
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0}).Reload()
    return {tag: acc.Images(tag) for tag in acc.Tags()["images"]}


def decoded(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def grid_size(n: int, th: int, tw: int, cols: int | None = None) -> tuple[int, int]:
    """(height, width) of n tiles of th x tw in cols columns (ceil(sqrt(n)) by default)."""
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    return rows * th + (rows - 1) * PAD, cols * tw + (cols - 1) * PAD


def filled_tiles(grid: np.ndarray, th: int, tw: int) -> int:
    """How many slots of a misclassified grid hold a tile (an empty slot is all grey)."""
    rows = (grid.shape[0] + PAD) // (th + PAD)
    cols = (grid.shape[1] + PAD) // (tw + PAD)
    slots = [
        grid[r * (th + PAD) : r * (th + PAD) + th, c * (tw + PAD) : c * (tw + PAD) + tw]
        for r in range(rows)
        for c in range(cols)
    ]
    return sum(bool(np.any(slot != GREY)) for slot in slots)


def check_pictures(logdir, confusion: list[list[int]], step: int) -> None:
    """The diagnostics of a threelayer (4 filters) on shapes: each tag once, at ``step``, of
    the documented size, the same pixels as its PNG; as many misclassified tiles as wrong
    predictions (at most 32)."""
    shown = images(logdir)
    tags = {t for t in shown if t.startswith("diagnostics/")}
    assert tags == {
        "diagnostics/misclassified",
        "diagnostics/confusion",
        "diagnostics/saliency",
        "diagnostics/activations/relu1",
    }
    for tag in tags:
        assert [e.step for e in shown[tag]] == [step]
        picture = decoded(shown[tag][0])
        png = np.asarray(Image.open(logdir / f"{tag.removeprefix('diagnostics/')}.png"))
        np.testing.assert_array_equal(picture, png)
    wrong = int(np.sum(confusion) - np.trace(confusion))
    n = min(wrong, MAX_MISCLASSIFIED)
    assert n > 0
    # 32x32 inputs are upscaled twice (64 px), with a label strip under each.
    misclassified = decoded(shown["diagnostics/misclassified"][0])
    assert misclassified.shape == (*grid_size(n, 64 + LABEL_PX, 64), 3)
    assert filled_tiles(misclassified, 64 + LABEL_PX, 64) == n
    # 6 classes: a = 2.5 + 6 / 2 = 5.5 inches at 100 dpi, plus 1.5 for the colour bar.
    assert decoded(shown["diagnostics/confusion"][0]).shape == (550, 700, 3)
    # 4 images, each beside its map.
    assert decoded(shown["diagnostics/saliency"][0]).shape == (*grid_size(8, 64, 64, 2), 3)
    # relu1: (4, 32, 32) maps upscaled twice; a row per image, a column per channel.
    feature_maps = decoded(shown["diagnostics/activations/relu1"][0])
    assert feature_maps.shape == (*grid_size(16, 64, 64, 4), 3)


def test_a_finished_run_shows_what_it_learned(runs):
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        check_pictures(run, results["confusion"], results["steps"])
        log = (run / "train.log").read_text()
        assert "Test confusion matrix (shapes)" in log and "true \\ predicted" in log


def test_eval_writes_the_pictures_of_any_checkpoint(runs, tmp_path):
    args = ["eval", f"checkpoint={runs[0]}", "backend=torch", "diagnostics=true"]
    result = run_cnnlab(*args, "hydra.run.dir=ev", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    check_pictures(tmp_path / "ev", ev["confusion"], ev["step"])


def _engines(model: str, overrides: list[str], backends: tuple[str, ...], shape: tuple):
    """The same float64 weights (drawn once) on each backend."""
    cfg = compose("train", [f"model={model}", *overrides])
    rng = np.random.default_rng(0)
    instance = instantiate(cfg.model, cfg.norm, cfg.init, shape, rng, np.float64)
    # Batch norm's running statistics away from (0, 1), so that eval mode is tested.
    for name, buffer in instance.buffers.items():
        low, high = (-0.1, 0.1) if name.endswith("mean") else (0.5, 1.5)
        buffer[...] = rng.uniform(low, high, buffer.shape)
    return {b: make_engine(get_backend(b), instance, cfg.optim) for b in backends}


# LeNet pads every input to 32x32, which the naive loops take seconds over: naive checks the
# small ResNet (batch norm in eval mode, residual sums) only.
@pytest.mark.parametrize(
    ("model", "overrides", "shape", "numpy"),
    [
        ("lenet", ["model.filters=[3,4]", "model.hidden=[8,8]"], (1, 20, 20), ("im2col",)),
        (
            "resnet18",
            ["norm=batch", "model.widths=[4,8]", "model.blocks=[1,1]"],
            (3, 9, 9),
            ("naive", "im2col"),
        ),
    ],
)
def test_saliency_is_the_same_on_every_backend(model, overrides, shape, numpy):
    engines = _engines(model, overrides, (*numpy, "torch"), shape)
    x = np.random.default_rng(1).standard_normal((3, *shape))
    y = np.array([0, 3, 1])
    want = saliency(engines["torch"], x, y)
    assert want.shape == (3, *shape[1:]) and want.max() > 0
    for backend in numpy:
        np.testing.assert_allclose(saliency(engines[backend], x, y), want, rtol=1e-8, atol=1e-14)
    # The gradient of one row's true-class logit: a finite difference agrees.
    engine, eps = engines["im2col"], 1e-6
    index = (0, 0, shape[1] // 2, shape[2] // 2)
    bumped = x.copy()
    bumped[index] += eps
    step = (engine.predict(bumped)[0, 0] - engine.predict(x)[0, 0]) / eps
    assert engine.score_grad(x, y)[index] == pytest.approx(step, rel=1e-4, abs=1e-9)


def test_activations_are_the_forward_pass_up_to_the_layer():
    engines = _engines(
        "lenet", ["model.filters=[3,4]", "model.hidden=[8,8]"], ("im2col", "torch"), (1, 20, 20)
    )
    x = np.random.default_rng(2).standard_normal((2, 1, 20, 20))
    p = {k: torch.from_numpy(v) for k, v in engines["im2col"].params().items()}
    # LeNet pads a 20x20 input by (32 - 20) // 2 = 6.
    relu1 = F.relu(F.conv2d(torch.from_numpy(x), p["conv1.w"], p["conv1.b"], padding=6))
    pool1 = F.max_pool2d(relu1, 2)
    relu2 = F.relu(F.conv2d(pool1, p["conv2.w"], p["conv2.b"]))
    want = {"conv1": None, "relu1": relu1, "pool1": pool1, "relu2": relu2}
    want["conv1"] = F.conv2d(torch.from_numpy(x), p["conv1.w"], p["conv1.b"], padding=6)
    for engine in engines.values():
        got = engine.activations(x, want)
        assert set(got) == set(want)
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value.numpy(), rtol=1e-12, atol=1e-12)
        with pytest.raises(KeyError, match="nope"):
            engine.activations(x, ["relu1", "nope"])


@pytest.mark.parametrize(
    ("model", "stages"),
    [
        ("lenet", ["relu1", "relu2"]),
        ("threelayer", ["relu1"]),
        ("resnet18", ["relu1", "layer1", "layer2", "layer3", "layer4"]),
        ("densenet121", ["relu0", "block1", "transition1", "block2", "transition2"]),
        ("nin", ["mlpconv1", "mlpconv2", "mlpconv3"]),
    ],
)
def test_conv_stages(model, stages):
    cfg = compose("train", [f"model={model}", "data=cifar10"])
    net = build_net(cfg.model, cfg.norm, (3, 32, 32))
    found = conv_stages(net, (3, 32, 32))
    assert found[: len(stages)] == stages
    if model == "densenet121":
        assert found[-1] == "relu5"  # block4, then its norm and activation
