"""Seeing what a trained net learned: pictures of one split, made at the end of ``cnnlab train``
and by ``cnnlab eval diagnostics=true``, on every backend.

:func:`build` makes them, :func:`write` puts each into the run directory as ``<name>.png`` and
into TensorBoard as ``diagnostics/<name>`` at the given step. Every picture is an
``(H, W, 3)`` uint8 RGB array whose size follows from the data alone (inputs ``(C, H, W)``,
``K`` classes):

- ``misclassified``: up to :data:`MAX_MISCLASSIFIED` wrong predictions, the first in the
  split's order, each tile the image (upscaled by ``s = ceil(64 / max(H, W))``, nearest
  neighbour) over a white strip of :data:`LABEL_PX` rows with the predicted class (red) and
  the true one. ``n`` tiles of ``(H·s + 26, W·s)`` in ``ceil(sqrt(n))`` columns, 2 grey pixels
  between them (:func:`~cnnlab.train.tensorboard.tiled`). None when every prediction is right.
- ``confusion``: a matplotlib heat map, rows the true class, columns the prediction, shaded by
  the fraction of the row, counts written in the cells (up to 20 classes).
  ``(100·a, 100·(a + 1.5))`` pixels with ``a = min(2.5 + K / 2, 12)``.
- ``saliency``: for the first :data:`FIXED_IMAGES` images of the split, the image and beside
  it ``max over channels |d logit[true class] / d x|`` from the backend's own backward pass,
  each map scaled to its own maximum (inferno colour map). ``n`` rows of two tiles
  ``(H·s, W·s)``.
- ``activations/<layer>``: each conv stage's output for the same images: a row per image,
  a column per channel (the first :data:`CHANNELS`), each channel scaled to its range over the
  images shown (0 = black; a constant channel is black). A map ``(h, w)`` is upscaled by
  ``t = ceil(48 / max(h, w))``: ``n·h·t + (n−1)·2`` by ``c·w·t + (c−1)·2`` pixels.

A conv stage (:func:`conv_stages`) is a top-level layer of the net that holds a conv (a conv
layer itself, or a block or stage of them: ResNet's ``layer1``, DenseNet's ``block1``)
together with the shape-keeping layers right after it (norm, activation); its picture is the
output of its last layer: ``relu1`` and ``relu2`` for LeNet, ``relu1`` (the stem) and
``layer1``..``layer4`` for ResNet.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data import unnormalised
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.tree import Chain, Layer, Node, Shape, leaves, out_shape
from cnnlab.train.tensorboard import tiled

if TYPE_CHECKING:
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont, ImageFont

    from cnnlab.data import Dataset, Split
    from cnnlab.train.engine import Engine
    from cnnlab.train.tensorboard import TensorBoardWriter

__all__ = ["Diagnostics", "build", "build_and_write", "conv_stages", "saliency", "write"]

log = logging.getLogger("cnnlab.diagnostics")

FIXED_IMAGES = 4  # the first images of the split, for saliency and feature maps
MAX_MISCLASSIFIED = 32
CHANNELS = 8  # feature maps shown per stage
LABEL_PX = 26  # the strip under a misclassified image: two lines of text
_IMAGE_PX = 64  # inputs are upscaled to at least this many pixels on their longer side
_MAP_PX = 48  # and feature maps to at least this many
_PAD = 2
_GREY = 128  # between the misclassified tiles


@dataclass(frozen=True)
class Diagnostics:
    """What :func:`build` made.

    Attributes:
        images: name -> (H, W, 3) uint8, in the order written (``misclassified``,
            ``confusion``, ``saliency``, ``activations/<layer>``...).
        shown: the split's indices of the misclassified images shown (at most
            :data:`MAX_MISCLASSIFIED`).
        saliency: (n, H, W) the raw saliency maps of the first n images of the split.
        stages: the layers whose outputs ``activations/<layer>`` show (:func:`conv_stages`).
    """

    images: dict[str, np.ndarray]
    shown: np.ndarray
    saliency: np.ndarray
    stages: list[str]


def conv_stages(net: Node, in_shape: Shape) -> list[str]:
    """The names of the layers whose outputs end the net's conv stages, in order (see the
    module docstring): a top-level child holding a conv, extended by the leaf layers right
    after it that keep its feature map's shape. Empty for a net that is not a chain."""
    if not isinstance(net, Chain):
        return []
    stages: list[str] = []
    open_stage = False
    shape = tuple(in_shape)
    for name, child in net.children:
        out = out_shape(child, shape)
        if len(out) == 3 and any(isinstance(leaf.layer, Conv2d) for leaf in leaves(child, shape)):
            stages.append(name)
            open_stage = True
        elif open_stage and isinstance(child, Layer) and out == shape:
            stages[-1] = name
        else:
            open_stage = False
        shape = out
    return stages


def saliency(engine: Engine, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, H, W): ``max over channels |d logit[y_i] / d x_i|`` for x: (N, C, H, W), from the
    engine's backward pass (:meth:`~cnnlab.train.engine.Engine.score_grad`)."""
    return np.abs(engine.score_grad(x, y)).max(axis=1)


def build(
    engine: Engine,
    data: Dataset,
    split: Split,
    pred: np.ndarray | None,
    title: str,
    batch_size: int = 256,
) -> Diagnostics:
    """The pictures of ``split`` (see the module docstring) for the weights ``engine`` holds.

    pred: (N,) the engine's predictions over the split (an evaluation's), or None to predict
    here; title: the confusion matrix's (``Test confusion matrix (mnist)``).
    """
    from cnnlab.train.metrics import confusion_matrix, evaluate

    K = len(data.classes)
    if pred is None:
        ev = evaluate(engine, split.x, split.y, batch_size, K)
        assert ev.pred is not None
        pred = ev.pred
    images: dict[str, np.ndarray] = {}
    wrong = np.flatnonzero(pred != split.y)[:MAX_MISCLASSIFIED]
    if len(wrong):
        images["misclassified"] = misclassified_grid(
            split.x[wrong], split.y[wrong], pred[wrong], data.classes, data.mean, data.std
        )
    images["confusion"] = confusion_image(confusion_matrix(split.y, pred, K), data.classes, title)
    x, y = split.x[:FIXED_IMAGES], split.y[:FIXED_IMAGES]
    maps = np.zeros((0, *split.x.shape[2:]))
    stages: list[str] = []
    if len(y):
        maps = saliency(engine, x, y)
        images["saliency"] = saliency_grid(x, maps, data.mean, data.std)
        stages = conv_stages(engine.net, tuple(split.x.shape[1:]))
        for name, a in engine.activations(x, stages).items():
            images[f"activations/{name}"] = activation_grid(a)
    return Diagnostics(images, wrong, maps, stages)


def write(diagnostics: Diagnostics, run_dir: Path, tb: TensorBoardWriter | None, step: int) -> None:
    """Each picture as ``<run_dir>/<name>.png`` and, given a writer, as the TensorBoard image
    ``diagnostics/<name>`` at ``step``."""
    from PIL import Image

    for name, image in diagnostics.images.items():
        path = run_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        if tb is not None:
            tb.image(f"diagnostics/{name}", image, step)


def build_and_write(
    engine: Engine,
    data: Dataset,
    split: Split,
    pred: np.ndarray | None,
    title: str,
    run_dir: Path,
    tb: TensorBoardWriter | None,
    step: int,
) -> Diagnostics:
    """:func:`build`, then :func:`write`, logging what was written and how long it took."""
    started = time.perf_counter()
    diagnostics = build(engine, data, split, pred, title)
    write(diagnostics, run_dir, tb, step)
    log.info(
        "diagnostics (%d misclassified images, confusion matrix, saliency and feature maps of "
        "%d images at %s) written to %s in %.2f s",
        len(diagnostics.shown),
        len(diagnostics.saliency),
        ", ".join(diagnostics.stages) or "no conv stage",
        run_dir,
        time.perf_counter() - started,
    )
    return diagnostics


# -- the pictures ------------------------------------------------------------------------------


def _scale(size: int, least: int) -> int:
    """The integer upscaling that brings ``size`` pixels to at least ``least``."""
    return max(1, math.ceil(least / size))


def display(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, H·s, W·s, 3) uint8: normalised images (N, C, H, W) as they were loaded (``x · std +
    mean``, clipped to [0, 1]), RGB for C = 3, else grey (the channel mean), upscaled by
    ``s = ceil(64 / max(H, W))``."""
    x = np.asarray(x, np.float64)
    pixels = unnormalised(x, mean, std)
    rgb = pixels.transpose(0, 2, 3, 1) if x.shape[1] == 3 else pixels.mean(axis=1)[..., None]
    rgb = np.broadcast_to(rgb, (*rgb.shape[:3], 3))
    s = _scale(max(x.shape[2:]), _IMAGE_PX)
    return np.round(rgb * 255).astype(np.uint8).repeat(s, axis=1).repeat(s, axis=2)


def misclassified_grid(
    x: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    """Wrong predictions as one picture: each image over a strip with ``pred <class>`` (red)
    and ``true <class>``; x: (n, C, H, W), y and pred: (n,). Shape: see the module docstring."""
    from PIL import Image, ImageDraw, ImageFont

    shown = display(x, mean, std)
    n, th, tw = shown.shape[:3]
    font = ImageFont.load_default()
    tiles = np.full((n, th + LABEL_PX, tw, 3), 255, np.uint8)
    tiles[:, :th] = shown
    for i in range(n):
        strip = Image.new("RGB", (tw, LABEL_PX), "white")
        draw = ImageDraw.Draw(strip)
        for row, (text, colour) in enumerate(
            ((f"pred {classes[pred[i]]}", (200, 0, 0)), (f"true {classes[y[i]]}", (0, 0, 0)))
        ):
            draw.text((2, 1 + 12 * row), _fitted(text, tw - 4, draw, font), colour, font)
        tiles[i, th:] = np.asarray(strip)
    return tiled(tiles, _PAD, _GREY)


def _fitted(text: str, width: int, draw: ImageDraw, font: FreeTypeFont | ImageFont) -> str:
    """text, cut (ending in ``…``) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def confusion_image(confusion: np.ndarray, classes: list[str], title: str) -> np.ndarray:
    """The confusion matrix (K, K) as a heat map: cells shaded by their fraction of the true
    class's row, counts written in them (up to 20 classes), class names on both axes.
    Shape: see the module docstring."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    K = len(classes)
    side = min(2.5 + K / 2, 12.0)
    fig = Figure(figsize=(side + 1.5, side), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    totals = confusion.sum(axis=1, keepdims=True)
    fraction = confusion / np.maximum(totals, 1)
    shading = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shading, ax=ax, label="fraction of the true class")
    size = 9 if K <= 10 else 7 if K <= 30 else 4
    ax.set_xticks(range(K), classes, rotation=45, ha="right", fontsize=size)
    ax.set_yticks(range(K), classes, fontsize=size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if K <= 20:
        for i, j in np.ndindex(K, K):
            colour = "white" if fraction[i, j] > 0.5 else "black"
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", color=colour, fontsize=8)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def saliency_grid(x: np.ndarray, maps: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """A row per image: the image, then its saliency map (n, H, W) scaled to its own maximum
    in the inferno colour map. Shape: see the module docstring."""
    from matplotlib import colormaps

    shown = display(x, mean, std)
    s = shown.shape[1] // maps.shape[1]
    maps = np.nan_to_num(np.asarray(maps, np.float64))
    peak = maps.max(axis=(1, 2), keepdims=True)
    scaled = np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0)
    heat = np.round(colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8)
    heat = heat.repeat(s, axis=1).repeat(s, axis=2)
    tiles = np.stack([shown, heat], axis=1).reshape(-1, *shown.shape[1:])  # image, map, ...
    return tiled(tiles, _PAD, 255, cols=2)


def activation_grid(a: np.ndarray) -> np.ndarray:
    """Feature maps a: (n, C, h, w) as grey tiles, a row per image and a column per channel
    (the first :data:`CHANNELS`), each channel scaled to its range over the n images.
    Shape: see the module docstring."""
    a = np.nan_to_num(np.asarray(a, np.float64)[:, :CHANNELS])
    n, c, h, w = a.shape
    lo = a.min(axis=(0, 2, 3), keepdims=True)
    span = a.max(axis=(0, 2, 3), keepdims=True) - lo
    grey = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 0.0)
    t = _scale(max(h, w), _MAP_PX)
    tiles = np.round(grey * 255).astype(np.uint8).repeat(t, axis=2).repeat(t, axis=3)
    tiles = np.repeat(tiles.reshape(n * c, h * t, w * t)[..., None], 3, axis=3)
    return tiled(tiles, _PAD, 255, cols=c)
