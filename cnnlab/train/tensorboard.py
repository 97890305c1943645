"""TensorBoard event files written with tensorboard's own writer: no TensorFlow, no torch.

Events go through ``tensorboard.summary.writer.event_file_writer.EventFileWriter``; summaries are
built from tensorboard's protos: scalars as ``simple_value``, histograms in the v2
histogram plugin's format, images as PNG-encoded image summaries, and hparams with
``hparams.summary_v2.hparams_pb`` (the v1 ``hparams.summary`` module imports TensorFlow).

Resuming: TensorBoard's purge mechanism is the ``SessionLog.START`` event that TensorFlow's
supervisor wrote at the start of every session. A writer on a fresh directory writes one at step
0; ``TensorBoardWriter(logdir, purge_step=s)`` writes one at step ``s``. TensorBoard's Python
loaders then drop every event read so far (from the earlier files) at a step ``>= s``, for every
tag: the data provider's ``plugin_event_accumulator`` (``--load_fast=false``) ignores the first
START of a run, hence the one at step 0, and the legacy ``EventAccumulator`` purges scalars,
images and v1 histograms but not tensors (v2 histograms, hparams). The Rust data server
(``--load_fast=true``, the default when ``tensorboard-data-server`` is installed) ignores
``SessionLog`` altogether and drops, per tag, the points at steps ``>= s`` once that tag is
written again at step ``s``. A resumed run that logs the same tags at the same steps therefore
looks the same under all of them (checked over HTTP with tensorboard 2.21 and
tensorboard-data-server 0.7.2, both ``--load_fast`` modes).

Both loaders read the event files of a directory in file-name order, and the name starts with the
creation time in whole seconds. A new writer therefore waits (at most about a second, only when a
file from the same second is already there) so that its file sorts after every existing one.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from pathlib import Path
from types import TracebackType

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from cnnlab.errors import ShapeError

__all__ = [
    "HPARAMS_RUN",
    "TensorBoardWriter",
    "filter_grid",
    "first_conv",
    "hparam_values",
    "sample_grid",
    "tiled",
]

# How often the writer's thread flushes on its own (tensorboard's default is 120 s); flush() and
# close() flush at once.
_FLUSH_SECS = 10

# The sub-folder of a run directory that holds its HPARAMS session (TensorBoardWriter.hparams).
HPARAMS_RUN = "hparams"

# How a run ended, as the HPARAMS tab's session status (it has no "interrupted": a run stopped
# by a signal, which can be resumed, is "unknown").
_SESSION_STATUS = {
    "success": api_pb2.STATUS_SUCCESS,
    "failure": api_pb2.STATUS_FAILURE,
    "unknown": api_pb2.STATUS_UNKNOWN,
}

# filter_grid upscales each filter (nearest neighbour, integer factor) to at least this many
# pixels on its longer side: a 5x5 or 7x7 filter becomes 35 px, a 3x3 one 33 px.
_MIN_FILTER_PX = 32


class TensorBoardWriter:
    """Writes scalars, histograms, images and hparams to one event file in ``logdir``.

    Args:
        logdir: The run's TensorBoard directory (created if missing).
        purge_step: When resuming from a checkpoint at global step ``s``, pass ``s``: events that
            the interrupted run wrote at steps ``>= s`` are then hidden (see the module docstring).

    Use as a context manager, or call :meth:`close` at the end: the writer flushes late (every
    10 s), and only :meth:`flush` / :meth:`close` guarantee that everything is on disk.
    """

    def __init__(self, logdir: str | Path, purge_step: int | None = None) -> None:
        self.logdir = Path(logdir)
        if purge_step is not None and purge_step < 0:
            raise ValueError(f"purge_step must be >= 0, got {purge_step}")
        self.logdir.mkdir(parents=True, exist_ok=True)
        fresh = _wait_for_a_later_file_name(self.logdir)
        self._writer = EventFileWriter(str(self.logdir), flush_secs=_FLUSH_SECS)
        self._closed = False
        self._last_step = 0
        # A session start: at step 0 in a fresh directory (the first START of a run, which
        # plugin_event_accumulator does not treat as a restart), at purge_step when resuming.
        # Without purge_step, a writer on a directory that has event files just appends.
        start_step = purge_step if purge_step is not None else 0 if fresh else None
        if start_step is not None:
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._add_event(event_pb2.Event(step=int(start_step), session_log=start))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One scalar (stored as float32, like every TensorBoard scalar)."""
        self.scalars({tag: value}, step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Several scalars at the same step, in one event."""
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                for tag, value in values.items()
            ]
        )
        self._add_summary(summary, step)

    def histogram(self, tag: str, values: np.ndarray, step: int, buckets: int = 30) -> None:
        """A histogram of ``values`` (any shape) in ``buckets`` equal-width buckets.

        Non-finite values are left out. The summary is the one ``histogram_pb`` builds (the
        tests check that they are equal), but the counts come from ``np.bincount`` instead of
        ``histogram_pb``'s ``(values.size, buckets)`` one-hot matrix, which for a 2.4M-weight
        layer would take 70 MB and a few hundred milliseconds.
        """
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        data = np.asarray(values, dtype=np.float64).ravel()
        data = data[np.isfinite(data)]
        summary = summary_pb2.Summary()
        summary.value.add(
            tag=tag,
            metadata=histogram_metadata.create_summary_metadata(
                display_name=None, description=None
            ),
            tensor=tensor_util.make_tensor_proto(_histogram_buckets(data, buckets), np.float64),
        )
        self._add_summary(summary, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """One image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.

        ``uint8`` values are used as they are; floats are read as ``[0, 1]`` (clipped).
        """
        pixels = _to_uint8(image)
        height, width = pixels.shape[:2]
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(
                    tag=tag,
                    image=summary_pb2.Summary.Image(
                        height=height,
                        width=width,
                        colorspace=channels,
                        encoded_image_string=_encode_png(pixels),
                    ),
                )
            ]
        )
        self._add_summary(summary, step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        """Text for the TEXT tab, rendered as Markdown (tables included)."""
        self._add_summary(text_pb(tag, markdown), step)

    def hparams(
        self,
        hparams: dict[str, float | int | str | bool],
        metrics: dict[str, float],
        trial_id: str,
        step: int | None = None,
        status: str = "success",
    ) -> None:
        """One session of the HPARAMS tab: the run's hyperparameters, its final metrics and
        how it ended.

        Writes the hparams plugin's session start (``hparams_pb``, with ``trial_id`` as the
        trial's name), each metric as a scalar under its own name, and the session end
        (``status``: success, failure or unknown), at ``step`` (default: the last step written
        so far). No experiment summary is written: TensorBoard then builds the table from every
        session's start, marks the hyperparameters whose values differ between sessions and
        shows those first. It takes every scalar tag of a session's run (and of the runs below
        it) as a metric column, so a run writes its session into a writer of its own
        (:data:`HPARAMS_RUN`), where the final metrics are the only scalars.
        """
        step = self._last_step if step is None else step
        self._add_summary(hparams_pb(hparams, trial_id=trial_id), step)
        self.scalars(metrics, step)
        # hparams.summary.session_end_pb builds this, but that module imports TensorFlow.
        end = plugin_data_pb2.SessionEndInfo(
            status=_SESSION_STATUS[status], end_time_secs=time.time()
        )
        summary = summary_pb2.Summary()
        summary.value.add(
            tag=hparams_metadata.SESSION_END_INFO_TAG,
            metadata=hparams_metadata.create_summary_metadata(
                plugin_data_pb2.HParamsPluginData(session_end_info=end)
            ),
            tensor=hparams_metadata.NULL_TENSOR,
        )
        self._add_summary(summary, step)

    def flush(self) -> None:
        """Writes everything queued so far to disk."""
        if not self._closed:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file; later calls do nothing."""
        if not self._closed:
            self._writer.flush()
            self._writer.close()
            self._closed = True

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _add_summary(self, summary: summary_pb2.Summary, step: int) -> None:
        self._add_event(event_pb2.Event(step=int(step), summary=summary))

    def _add_event(self, event: event_pb2.Event) -> None:
        event.wall_time = time.time()
        self._last_step = max(self._last_step, event.step)
        self._writer.add_event(event)


def hparam_values(config: dict) -> dict[str, float | str | bool]:
    """A run's resolved config as HPARAMS columns: every key that describes the experiment,
    dotted (``optim.lr``; not Hydra's, not where files are or how often the run reports:
    :func:`cnnlab.runs.naming.describes_experiment`), ``user.*`` only for the user backend,
    so that whatever makes two runs differ is a column.

    TensorBoard shows numbers to five significant digits, a batch size of 64 as ``64.000``:
    integers are given as text (``"64"``), floats as numbers, None as ``"null"``, lists as
    their text (``"[0.9, 0.999]"``).
    """
    from cnnlab.runs.naming import describes_experiment

    user = (config.get("backend") or {}).get("name") == "user"
    values: dict[str, float | str | bool] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = prefix + str(key)
            if not describes_experiment(name) or (name == "user" and not user):
                continue
            if isinstance(value, dict):
                walk(value, name + ".")
            elif isinstance(value, bool | float | str):
                values[name] = value
            elif value is None:
                values[name] = "null"
            else:  # int, list
                values[name] = str(value)

    walk(config, "")
    return values


def first_conv(params: dict[str, np.ndarray]) -> np.ndarray | None:
    """The first conv layer's weight (F, C, HH, WW): the first 4-D array of ``params``, which
    are in execution order. None for a net without convs."""
    return next((v for v in params.values() if v.ndim == 4), None)


def filter_grid(w: np.ndarray, pad: int = 1) -> np.ndarray:
    """First-layer conv filters as one RGB image, for :meth:`TensorBoardWriter.image`.

    Args:
        w: Filters, shape ``(F, C, HH, WW)``.
        pad: Black pixels between tiles (in output pixels, after upscaling).

    Returns:
        ``(H, W, 3)`` uint8. The ``F`` filters are tiled row by row in a grid of
        ``ceil(sqrt(F))`` columns. Each filter is min-max scaled on its own to ``[0, 255]`` (a
        constant filter becomes mid grey); ``C = 3`` is shown as RGB, ``C = 1`` as grey, any other
        ``C`` as the grey mean over channels. Each filter is upscaled by an integer factor
        ``s = ceil(32 / max(HH, WW))`` (nearest neighbour), so a 7x7 filter becomes 35x35 px.

    Shape:
        ``H = rows * HH * s + (rows - 1) * pad``, ``W = cols * WW * s + (cols - 1) * pad``,
        with ``cols = ceil(sqrt(F))`` and ``rows = ceil(F / cols)``.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4 or 0 in w.shape:
        raise ShapeError(f"filter_grid needs filters of shape (F, C, HH, WW), got {w.shape}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    _, C, HH, WW = w.shape
    # (F, HH, WW, 3): RGB for C = 3, else the channel mean (w itself for C = 1) in grey
    tiles = w.transpose(0, 2, 3, 1) if C == 3 else np.repeat(w.mean(axis=1)[..., None], 3, axis=3)
    lo = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
    scaled = np.where(span > 0, (tiles - lo) / np.where(span > 0, span, 1.0), 0.5)
    tiles = np.round(scaled * 255.0).astype(np.uint8)

    s = math.ceil(_MIN_FILTER_PX / max(HH, WW))
    tiles = tiles.repeat(s, axis=1).repeat(s, axis=2)  # (F, HH*s, WW*s, 3)
    return tiled(tiles, pad, 0)


def sample_grid(x: np.ndarray, mean: np.ndarray, std: np.ndarray, pad: int = 2) -> np.ndarray:
    """A batch of normalised images as one image, for :meth:`TensorBoardWriter.image`.

    Args:
        x: Images, shape ``(N, C, H, W)``, normalised per channel.
        mean, std: The normalisation, ``(C,)``, undone: pixels are ``x * std + mean``, clipped
            to ``[0, 1]``, so images look as they were loaded (and the zero fill of crop,
            rotate and scale shows as the train split's mean colour).
        pad: White pixels between tiles.

    Returns:
        Floats in ``[0, 1]``: ``(H', W', 3)`` for ``C = 3`` (RGB), ``(H', W')`` grey for any
        other ``C`` (the channel mean). The images are tiled row by row in a grid of
        ``ceil(sqrt(N))`` columns, at their own size.

    Shape:
        ``H' = rows * H + (rows - 1) * pad``, ``W' = cols * W + (cols - 1) * pad``, with
        ``cols = ceil(sqrt(N))`` and ``rows = ceil(N / cols)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or 0 in x.shape:
        raise ShapeError(f"sample_grid needs images of shape (N, C, H, W), got {x.shape}")
    from cnnlab.data import unnormalised

    pixels = unnormalised(x, mean, std)
    tiles = pixels.transpose(0, 2, 3, 1) if x.shape[1] == 3 else pixels.mean(axis=1)
    return tiled(tiles, pad, 1.0)


def tiled(tiles: np.ndarray, pad: int, fill: float, cols: int | None = None) -> np.ndarray:
    """Tiles (F, th, tw, ...) row by row in ``cols`` columns (default ``ceil(sqrt(F))``),
    ``pad`` pixels of ``fill`` between them: (rows·th + (rows−1)·pad, cols·tw + (cols−1)·pad,
    ...), ``rows = ceil(F / cols)``."""
    F, th, tw = tiles.shape[:3]
    cols = math.ceil(math.sqrt(F)) if cols is None else cols
    rows = math.ceil(F / cols)
    shape = (rows * th + (rows - 1) * pad, cols * tw + (cols - 1) * pad, *tiles.shape[3:])
    grid = np.full(shape, fill, tiles.dtype)
    for f in range(F):
        y, x = (f // cols) * (th + pad), (f % cols) * (tw + pad)
        grid[y : y + th, x : x + tw] = tiles[f]
    return grid


def _histogram_buckets(data: np.ndarray, k: int) -> np.ndarray:
    """``(k, 3)`` rows of (left edge, right edge, count), exactly as ``histogram_pb`` makes them.

    Same arithmetic as tensorboard's ``histogram_pb``: bucket ``floor((x - min) / width)``,
    clamped to ``k - 1``; edges from ``linspace(min, max, k + 1)``; all data in the last bucket
    when every value is the same; all zeros when there is no data.
    """
    if data.size == 0:
        return np.zeros((k, 3))
    lo, hi = data.min(), data.max()
    if hi == lo:
        counts = np.zeros(k)
        counts[-1] = data.size
        return np.stack([np.full(k, lo), np.full(k, lo), counts], axis=1)
    index = np.minimum(np.floor((data - lo) / ((hi - lo) / k)).astype(int), k - 1)
    edges = np.linspace(lo, hi, k + 1)
    return np.stack([edges[:-1], edges[1:], np.bincount(index, minlength=k)], axis=1)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ShapeError(
            f"an image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}"
        )
    if 0 in image.shape:
        raise ShapeError(f"an image must not be empty, got {image.shape}")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        return np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"an image must be uint8 or float in [0, 1], got dtype {image.dtype}")


def _encode_png(pixels: np.ndarray) -> bytes:
    """8-bit grey, RGB or RGBA PNG bytes.

    A dozen lines of zlib instead of Pillow: Pillow is only an indirect dependency (through
    matplotlib), and this keeps the event writer's imports to numpy and tensorboard.
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # column 0: filter type 0 (none)
    rows[:, 1:] = pixels.reshape(height, width * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _wait_for_a_later_file_name(logdir: Path) -> bool:
    """Sleeps until a new event file's name (``...tfevents.<seconds>.<host>.<pid>.<n>``) sorts
    after every event file already in ``logdir``: at most about a second, and only when one of
    them was created in the current second (or a clock tick ahead, to bound the wait).

    Returns whether ``logdir`` has no event file yet.
    """
    newest = -1
    paths = list(logdir.glob("events.out.tfevents.*"))
    for path in paths:
        field = path.name.split(".")[3]
        if field.isdigit():
            newest = max(newest, int(field))
    while newest >= int(time.time()) and newest - time.time() < 2:
        time.sleep(0.02)
    return not paths
