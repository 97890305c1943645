"""data.transforms: rotation, scaling and colour jitter with known values, the draws' order and
determinism, and how the list and data.augment combine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cnnlab.config import compose
from cnnlab.data.augment import (
    TRANSFORMS,
    Augmentation,
    Crops,
    Jitter,
    apply_crops,
    apply_transforms,
    augment,
    draw_transforms,
    jitter,
    rotation,
    warp,
    zoom,
)
from cnnlab.data.batches import Rows
from cnnlab.errors import UsageError
from tests.data.conftest import strengths

ALL = strengths(*TRANSFORMS)


def images(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def everything(n):
    return Rows(0, n, n)


# -- warp: rotation and scaling ---------------------------------------------------------------


def test_no_turn_and_no_zoom_leave_images_exactly_as_they_are():
    x = images((4, 3, 7, 9))
    np.testing.assert_array_equal(warp(x, rotation(np.zeros(4))), x)
    np.testing.assert_array_equal(warp(x, zoom(np.ones(4))), x)
    drawn = Augmentation(("rotate", "scale"), rotate_deg=0.0, scale=(1.0, 1.0))
    steps = draw_transforms(np.random.default_rng(0), drawn, everything(4))
    np.testing.assert_array_equal(apply_transforms(x, steps), x)


@pytest.mark.parametrize(("degrees", "k"), [(90, 1), (-90, -1), (180, 2), (270, 3)])
def test_quarter_turns_are_rot90(degrees, k):
    x = images((3, 2, 6, 6), dtype=np.float64)
    got = warp(x, rotation(np.full(3, degrees)))
    np.testing.assert_allclose(got, np.rot90(x, k, axes=(2, 3)), rtol=0, atol=1e-12)


def test_a_half_turn_of_a_non_square_image_reverses_both_axes():
    x = images((2, 1, 5, 8), dtype=np.float64)
    got = warp(x, rotation(np.full(2, 180.0)))
    np.testing.assert_allclose(got, x[:, :, ::-1, ::-1], rtol=0, atol=1e-12)


def test_zoom_by_two_reads_between_pixels_and_half_zoom_reads_zeros_outside():
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)  # [[0 1 2] [3 4 5] [6 7 8]]
    got = warp(x, zoom(np.array([2.0])))[0, 0]
    # Pixel (i, j) reads (1 + (i-1)/2, 1 + (j-1)/2): (0, 0) the mean of 0, 1, 3, 4; (0, 1)
    # halfway between 1 and 4; the centre itself.
    assert got[0, 0] == pytest.approx(2.0) and got[0, 1] == pytest.approx(2.5)
    assert got[1, 1] == 4.0 and got[2, 2] == pytest.approx(6.0)
    x5 = np.ones((1, 1, 5, 5))
    half = warp(x5, zoom(np.array([0.5])))[0, 0]  # (i, j) reads (2 + 2(i-2), 2 + 2(j-2))
    assert half[2, 2] == 1.0 and half[1, 1] == 1.0  # reads (2, 2) and (0, 0)
    assert half[0, 0] == 0.0 and half[0, 2] == 0.0  # reads (-2, -2) and (-2, 2): outside


def test_warp_is_grid_sample_with_aligned_corners_and_zero_padding():
    """torch as the oracle, in float64, for random turns and zooms of a non-square batch."""
    n, h, w = 6, 7, 10
    x = images((n, 3, h, w), dtype=np.float64)
    rng = np.random.default_rng(1)
    m = rotation(rng.uniform(-180, 180, n)) @ zoom(rng.uniform(0.6, 1.5, n))
    got = warp(x, m)
    # grid_sample reads at normalised coordinates: -1 is the first pixel, +1 the last.
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows, cols = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    sy = cy + m[:, 0, 0, None, None] * rows + m[:, 0, 1, None, None] * cols
    sx = cx + m[:, 1, 0, None, None] * rows + m[:, 1, 1, None, None] * cols
    grid = np.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], axis=-1)  # (N, H, W, 2)
    expected = F.grid_sample(
        torch.from_numpy(x),
        torch.from_numpy(grid),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    ).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# -- colour ----------------------------------------------------------------------------------


def test_brightness_contrast_and_saturation_on_known_pixels():
    # Two pixels of one RGB image, stored normalised with mean 0.5 and std 0.25.
    pixels = np.array([[0.2, 0.8], [0.4, 0.6], [0.6, 0.1]])[None, :, None, :]  # (1, 3, 1, 2)
    mean, std = np.full(3, 0.5), np.full(3, 0.25)
    x = (pixels - 0.5) / 0.25

    def on_pixels(b=None, c=None, s=None):
        step = Jitter(*(None if f is None else np.array([f]) for f in (b, c, s)), mean, std)
        return jitter(x, step) * 0.25 + 0.5

    np.testing.assert_allclose(on_pixels(b=1.5), np.minimum(pixels * 1.5, 1.0), atol=1e-12)
    grey = 0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]  # (1, 1, 2)
    m = grey.mean()
    np.testing.assert_allclose(on_pixels(c=0.5), 0.5 * pixels + 0.5 * m, atol=1e-12)
    np.testing.assert_allclose(on_pixels(c=0.0), np.full_like(pixels, m), atol=1e-12)
    np.testing.assert_allclose(on_pixels(s=0.0), np.repeat(grey[:, None], 3, 1), atol=1e-12)
    np.testing.assert_allclose(on_pixels(s=1.0), pixels, atol=1e-12)
    # In order: brightness, then contrast (of the brightened image), then saturation.
    p = np.clip(pixels * 1.2, 0, 1)
    g = 0.299 * p[:, 0] + 0.587 * p[:, 1] + 0.114 * p[:, 2]
    p = np.clip(0.7 * p + 0.3 * g.mean(), 0, 1)
    g = (0.299 * p[:, 0] + 0.587 * p[:, 1] + 0.114 * p[:, 2])[:, None]
    p = np.clip(1.4 * p + (1 - 1.4) * g, 0, 1)
    np.testing.assert_allclose(on_pixels(1.2, 0.7, 1.4), p, atol=1e-12)


def test_saturation_leaves_one_channel_images_alone_and_contrast_uses_their_mean():
    x = images((3, 1, 4, 4), dtype=np.float64) * 0.1 + 0.5  # pixels in (0, 1), no normalisation
    ones = np.ones(3)
    np.testing.assert_array_equal(jitter(x, Jitter(None, None, ones * 0.2)), x)
    c = np.array([0.5, 1.0, 0.0])
    got = jitter(x, Jitter(None, c, None))
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(got, c[:, None, None, None] * x + (1 - c)[:, None, None, None] * m)


# -- draws: order, determinism, rows ----------------------------------------------------------


def test_transforms_are_drawn_and_applied_in_list_order():
    x = images((5, 3, 8, 8), dtype=np.float64)
    aug = Augmentation(("rotate", "crop"), crop_pad=2, rotate_deg=40)
    got = apply_transforms(x, draw_transforms(np.random.default_rng(7), aug, everything(5)))
    rng = np.random.default_rng(7)  # the same numbers, in the documented order
    angles = rng.uniform(-40, 40, 5)
    dy, dx = rng.integers(0, 5, 5), rng.integers(0, 5, 5)
    expected = apply_crops(warp(x, rotation(angles)), Crops(2, dy, dx, None))
    np.testing.assert_array_equal(got, expected)
    swapped = Augmentation(("crop", "rotate"), crop_pad=2, rotate_deg=40)
    other = apply_transforms(x, draw_transforms(np.random.default_rng(7), swapped, everything(5)))
    assert not np.allclose(other, got)


def test_crop_then_flip_is_the_augment_of_before_the_list():
    x = images((16, 3, 7, 9))
    old = augment(x, np.random.default_rng([1, 2, 3, 1]), crop_pad=2, flip=True)
    aug = Augmentation(("crop", "flip"), crop_pad=2)
    (step,) = draw_transforms(np.random.default_rng([1, 2, 3, 1]), aug, everything(16))
    assert isinstance(step, Crops) and step.mirror is not None  # one gather
    np.testing.assert_array_equal(apply_transforms(x, (step,)), old)


def test_every_transform_is_deterministic_and_differs_between_batches():
    x = images((8, 3, 10, 10))
    saved = x.copy()

    def batch(*position):
        steps = draw_transforms(np.random.default_rng([0, *position, 1]), ALL, everything(8))
        return apply_transforms(x, steps)

    a, b = batch(0, 3), batch(0, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, batch(0, 4)) and not np.allclose(a, batch(1, 3))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(x, saved)


@pytest.mark.parametrize("rows", [Rows(0, 5, 9), Rows(5, 9, 9), Rows(9, 9, 9)])
def test_a_shard_gets_its_rows_of_the_whole_batch_transforms(rows):
    x = images((9, 3, 6, 5))
    whole = apply_transforms(x, draw_transforms(np.random.default_rng(4), ALL, everything(9)))
    steps = draw_transforms(np.random.default_rng(4), ALL, rows)
    np.testing.assert_array_equal(apply_transforms(x[rows.slice], steps), whole[rows.slice])


# -- config: data.augment and data.transforms --------------------------------------------------


def node(**keys):
    base = {"augment": True, "crop_pad": 4, "flip": True, "transforms": None, "rotate_deg": 15}
    return OmegaConf.create(base | {"scale": [0.9, 1.1]} | keys)


def test_augment_without_a_list_is_crop_then_flip_and_a_list_is_taken_in_order():
    mean, std = np.zeros(3), np.ones(3)
    assert Augmentation.of(node(augment=False), mean, std) is None
    assert Augmentation.of(node(), mean, std).transforms == ("crop", "flip")
    assert Augmentation.of(node(crop_pad=0), mean, std).transforms == ("flip",)
    assert Augmentation.of(node(crop_pad=0, flip=False), mean, std) is None
    assert Augmentation.of(node(transforms=[]), mean, std) is None
    aug = Augmentation.of(node(transforms=["scale", "flip", "rotate"]), mean, std)
    assert aug.transforms == ("scale", "flip", "rotate")
    assert (aug.scale, aug.rotate_deg, aug.brightness) == ((0.9, 1.1), 15.0, 0.0)
    # A saved config from before the list has no transforms key: crop then flip.
    old = OmegaConf.create({"augment": True, "crop_pad": 4, "flip": True})
    assert Augmentation.of(old, mean, std).transforms == ("crop", "flip")


def test_the_config_defaults_and_the_list_of_choices():
    data = compose("train", ["data.augment=true", "data.transforms=[crop,flip,rotate]"]).data
    assert [str(t) for t in data.transforms] == ["crop", "flip", "rotate"]
    assert (data.rotate_deg, list(data.scale)) == (15, [0.9, 1.1])
    assert (data.brightness, data.contrast, data.saturation) == (0.2, 0.2, 0.2)
    assert compose("train", ["data=cifar10", "data.root=x"]).data.transforms is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.transforms=[crop,flip,rotat]"],
            "data.transforms[2]: 'rotat' is not an option; choose from "
            "crop, flip, rotate, scale, color",
        ),
        (
            ["data.transforms=[rotate]"],
            "data.transforms=[rotate] needs data.augment=true (false turns augmentation off)",
        ),
        (
            ["data.augment=true", "data.transforms=[flip,flip]"],
            "data.transforms=[flip,flip]: name each transform once",
        ),
        (
            ["data.augment=true", "data.transforms=[crop]", "data.crop_pad=0"],
            "data.transforms=[crop]: crop needs data.crop_pad >= 1 (0 crops nothing)",
        ),
        (
            ["data.augment=true", "data.transforms=[flip]", "data.flip=false"],
            "data.transforms=[flip]: flip is listed but data.flip=false; drop one of them",
        ),
        (
            ["data.scale=[1.2,0.8]"],
            "data.scale must be [low, high] with low <= high, got [1.2, 0.8]",
        ),
        (
            ["data.augment=true", "data.transforms=[crop,color]", "trainer.rng=device"],
            "trainer.rng=device draws crop and flip only; data.transforms with color needs "
            "trainer.rng=numpy",
        ),
    ],
)
def test_contradictions_are_one_line(overrides, message):
    with pytest.raises(UsageError) as caught:
        compose("train", overrides)
    assert str(caught.value) == message
