"""TensorBoardWriter: what it writes reads back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    IMAGES,
    SCALARS,
    TENSORS,
    EventAccumulator,
)
from tensorboard.backend.event_processing.plugin_event_accumulator import (
    EventAccumulator as PluginEventAccumulator,
)
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from cnnlab.errors import ShapeError
from cnnlab.train.tensorboard import TensorBoardWriter, _histogram_buckets, filter_grid


def read(logdir):
    acc = EventAccumulator(
        str(logdir), size_guidance={SCALARS: 0, TENSORS: 0, IMAGES: 0, HISTOGRAMS: 0}
    )
    acc.Reload()
    return acc


def scalar_points(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_scalars_round_trip(tmp_path):
    with TensorBoardWriter(tmp_path) as tb:
        for step in range(5):
            tb.scalar("train/loss", 2.5 - 0.25 * step, step)
        tb.scalars({"val/loss": 1.5, "val/acc": 0.75}, step=4)
    acc = read(tmp_path)
    assert scalar_points(acc, "train/loss") == [(s, 2.5 - 0.25 * s) for s in range(5)]
    assert scalar_points(acc, "val/loss") == [(4, 1.5)]
    assert scalar_points(acc, "val/acc") == [(4, 0.75)]
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_close_flushes_without_waiting(tmp_path):
    tb = TensorBoardWriter(tmp_path)
    tb.scalar("x", 1.0, 0)
    tb.close()
    tb.close()  # a second close does nothing
    assert scalar_points(read(tmp_path), "x") == [(0, 1.0)]


def test_histogram_count_and_range(tmp_path):
    values = np.random.default_rng(0).normal(size=(16, 3, 5, 5))
    with TensorBoardWriter(tmp_path) as tb:
        tb.histogram("conv1/w", values, step=3, buckets=20)
    (event,) = read(tmp_path).Tensors("conv1/w")
    assert event.step == 3
    buckets = tensor_util.make_ndarray(event.tensor_proto)  # (k, 3): left, right, count
    assert buckets.shape == (20, 3)
    assert buckets[:, 2].sum() == values.size
    assert buckets[0, 0] == values.min() and buckets[-1, 1] == values.max()
    centres = (buckets[:, 0] + buckets[:, 1]) / 2
    width = buckets[0, 1] - buckets[0, 0]
    assert abs((centres * buckets[:, 2]).sum() - values.sum()) <= values.size * width / 2


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).normal(size=1000),
        np.arange(10.0),  # values on the bucket edges
        np.full(7, 3.0),  # one value: all in the last bucket
        np.array([]),
    ],
)
@pytest.mark.parametrize("k", [1, 30])
def test_histogram_matches_histogram_pb(data, k):
    expected = tensor_util.make_ndarray(histogram_pb("t", data, buckets=k).value[0].tensor)
    np.testing.assert_array_equal(_histogram_buckets(data, k), expected)


def test_histogram_drops_non_finite(tmp_path):
    with TensorBoardWriter(tmp_path) as tb:
        tb.histogram("h", np.array([1.0, 2.0, np.nan, np.inf]), step=0)
    (event,) = read(tmp_path).Tensors("h")
    assert tensor_util.make_ndarray(event.tensor_proto)[:, 2].sum() == 2


@pytest.mark.parametrize(
    ("image", "mode"),
    [
        (np.random.default_rng(2).integers(0, 256, (13, 21, 3), dtype=np.uint8), "RGB"),
        (np.random.default_rng(3).integers(0, 256, (9, 5), dtype=np.uint8), "L"),
        (np.random.default_rng(4).integers(0, 256, (6, 7, 4), dtype=np.uint8), "RGBA"),
    ],
)
def test_image_decodes_to_the_same_pixels(tmp_path, image, mode):
    with TensorBoardWriter(tmp_path) as tb:
        tb.image("img", image, step=1)
    (event,) = read(tmp_path).Images("img")
    assert (event.step, event.height, event.width) == (1, image.shape[0], image.shape[1])
    decoded = Image.open(io.BytesIO(event.encoded_image_string))
    assert decoded.mode == mode
    np.testing.assert_array_equal(np.asarray(decoded), image)


def test_float_image_is_scaled_from_unit_range(tmp_path):
    image = np.array([[0.0, 0.5, 1.0, 2.0]])  # 2.0 is clipped
    with TensorBoardWriter(tmp_path) as tb:
        tb.image("img", image, step=0)
    (event,) = read(tmp_path).Images("img")
    decoded = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
    np.testing.assert_array_equal(decoded, [[0, 128, 255, 255]])


@pytest.mark.parametrize("shape", [(4,), (4, 4, 2), (2, 4, 4, 3), (0, 4)])
def test_image_rejects_bad_shapes(tmp_path, shape):
    with TensorBoardWriter(tmp_path) as tb, pytest.raises(ShapeError):
        tb.image("img", np.zeros(shape, np.uint8), step=0)


def test_hparams_session_and_final_metrics(tmp_path):
    hparams = {"lr": 0.01, "batch_size": 64, "model": "lenet", "augment": True}
    with TensorBoardWriter(tmp_path) as tb:
        for step in range(3):
            tb.scalar("val/acc", 0.5 + 0.1 * step, step * 100)
        tb.hparams(hparams, {"val_acc": 0.7, "val_loss": 0.9}, "lenet-im2col", status="failure")
    acc = read(tmp_path)

    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert set(content) == {
        hparams_metadata.SESSION_START_INFO_TAG,
        hparams_metadata.SESSION_END_INFO_TAG,
    }
    start = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["lr"].number_value == 0.01
    assert start.hparams["batch_size"].number_value == 64
    assert start.hparams["model"].string_value == "lenet"
    assert start.hparams["augment"].bool_value is True
    assert start.group_name == "lenet-im2col"
    end = hparams_metadata.parse_session_end_info_plugin_data(
        content[hparams_metadata.SESSION_END_INFO_TAG]
    )
    assert end.status == api_pb2.STATUS_FAILURE

    # The final metrics sit at the last step written, after the run's own scalars.
    assert scalar_points(acc, "val_acc") == [(200, pytest.approx(0.7))]
    assert scalar_points(acc, "val_loss") == [(200, pytest.approx(0.9))]
    assert [s for s, _ in scalar_points(acc, "val/acc")] == [0, 100, 200]


def test_purge_step_hides_what_the_interrupted_run_wrote_after_it(tmp_path):
    with TensorBoardWriter(tmp_path) as tb:
        for step in range(10):
            tb.scalar("loss", float(step), step)
            tb.histogram("w", np.full(3, float(step)), step)
    # Resume from a checkpoint at step 5, in the same second (the writer orders its file after).
    with TensorBoardWriter(tmp_path, purge_step=5) as tb:
        for step in range(5, 8):
            tb.scalar("loss", 100.0 + step, step)
            tb.histogram("w", np.full(3, 100.0 + step), step)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    expected = [(s, float(s)) for s in range(5)] + [(s, 100.0 + s) for s in range(5, 8)]
    assert scalar_points(read(tmp_path), "loss") == expected

    # The loader behind TensorBoard's Python data provider stores everything as tensors and
    # purges them all. (The legacy EventAccumulator above purges scalars, images and v1
    # histograms only, so its Tensors("w") would still hold the old steps 5..9.)
    acc = PluginEventAccumulator(str(tmp_path), size_guidance={TENSORS: 0})
    acc.Reload()
    loss = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in acc.Tensors("loss")]
    assert loss == expected
    w = [(e.step, tensor_util.make_ndarray(e.tensor_proto)[-1, 0]) for e in acc.Tensors("w")]
    assert w == expected


def test_purge_step_hides_tags_the_resumed_run_does_not_write(tmp_path):
    with TensorBoardWriter(tmp_path) as tb:
        for step in range(10):
            tb.scalars({"loss": 1.0, "lr": 0.1}, step)
    with TensorBoardWriter(tmp_path, purge_step=5) as tb:
        tb.scalar("loss", 2.0, 5)
    acc = read(tmp_path)
    assert [s for s, _ in scalar_points(acc, "lr")] == [0, 1, 2, 3, 4]
    assert [s for s, _ in scalar_points(acc, "loss")] == [0, 1, 2, 3, 4, 5]


def test_purge_step_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="purge_step"):
        TensorBoardWriter(tmp_path, purge_step=-1)


def test_importing_the_writer_loads_neither_torch_nor_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from cnnlab.train.tensorboard import TensorBoardWriter, filter_grid\n"
        f"with TensorBoardWriter({str(tmp_path)!r}) as tb:\n"
        "    tb.scalar('a', 1.0, 0)\n"
        "    tb.histogram('h', np.arange(5.0), 0)\n"
        "    tb.image('i', filter_grid(np.ones((4, 3, 3, 3))), 0)\n"
        "    tb.hparams({'lr': 0.1}, {'acc': 0.5}, 'run')\n"
        "heavy = ('torch', 'tensorflow', 'tensorboardX', 'matplotlib', 'PIL')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class TestFilterGrid:
    def test_shape_and_dtype(self):
        grid = filter_grid(np.random.default_rng(0).normal(size=(6, 3, 7, 7)), pad=2)
        # 6 filters: 3 columns, 2 rows; 7x7 upscaled by ceil(32 / 7) = 5 to 35x35.
        assert grid.dtype == np.uint8
        assert grid.shape == (2 * 35 + 2, 3 * 35 + 2 * 2, 3)

    def test_grey_for_one_channel_and_for_the_channel_mean(self):
        w = np.random.default_rng(1).normal(size=(4, 1, 3, 3))
        grid = filter_grid(w, pad=0)
        assert (grid[..., 0] == grid[..., 1]).all() and (grid[..., 1] == grid[..., 2]).all()
        w5 = np.random.default_rng(2).normal(size=(4, 5, 3, 3))
        np.testing.assert_array_equal(
            filter_grid(w5, pad=0), filter_grid(w5.mean(axis=1, keepdims=True), pad=0)
        )

    def test_rgb_keeps_colour(self):
        w = np.zeros((1, 3, 2, 2))
        w[0, 0] = 1.0  # red channel on, green and blue off
        grid = filter_grid(w, pad=0)
        np.testing.assert_array_equal(grid[0, 0], [255, 0, 0])

    def test_a_known_filter_lands_in_its_tile(self):
        # 5 filters -> 3 columns, 2 rows; filter 4 is at row 1, column 1.
        w = np.zeros((5, 1, 4, 4))
        w[4, 0, 0, 0] = 1.0  # one bright top-left pixel; the other filters are constant
        grid = filter_grid(w, pad=1)
        s = 8  # ceil(32 / 4)
        y, x = 4 * s + 1, 4 * s + 1  # top-left corner of row 1, column 1
        assert (grid[y : y + s, x : x + s] == 255).all()
        assert (grid[y + s : y + 4 * s, x : x + 4 * s] == 0).all()
        assert (grid[0 : 4 * s, 0 : 4 * s] == 128).all()  # constant filter: mid grey
        assert (grid[4 * s, :] == 0).all() and (grid[:, 4 * s] == 0).all()  # the padding

    def test_each_filter_is_scaled_on_its_own(self):
        w = np.stack([np.arange(4.0).reshape(1, 2, 2), 1000 * np.arange(4.0).reshape(1, 2, 2)])
        grid = filter_grid(w, pad=0)
        side = 2 * 16  # 2x2 upscaled by ceil(32 / 2)
        assert grid.shape == (side, 2 * side, 3)
        np.testing.assert_array_equal(grid[:, :side], grid[:, side:])

    def test_rejects_non_4d(self):
        with pytest.raises(ShapeError):
            filter_grid(np.zeros((3, 3, 3)))


def test_a_second_writer_without_purge_step_appends(tmp_path):
    with TensorBoardWriter(tmp_path) as tb:
        tb.scalar("loss", 1.0, 3)
    with TensorBoardWriter(tmp_path) as tb:
        tb.scalar("loss", 2.0, 4)
    assert scalar_points(read(tmp_path), "loss") == [(3, 1.0), (4, 2.0)]
    acc = PluginEventAccumulator(str(tmp_path), size_guidance={TENSORS: 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("loss")] == [3, 4]
