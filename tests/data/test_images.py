"""Image files as a run's data: Pillow's reading, converted and resized to the run's shape, and
normalised into the very arrays the loader gives (``cnnlab predict``'s input)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from cnnlab.data import load, mnist, normalised
from cnnlab.data.images import image_files, read_image
from cnnlab.errors import RunError, UsageError

from .conftest import SHARED_MNIST, data_node, fake_mnist, needs_real_mnist, write_mnist


def png_of(path, pixels: np.ndarray):
    """A PNG of (C, H, W) uint8 pixels, as a user would save a data set's image."""
    C = pixels.shape[0]
    array = pixels[0] if C == 1 else pixels.transpose(1, 2, 0)
    PILImage.fromarray(array).save(path)
    return path


def test_a_grey_png_of_the_runs_size_reads_back_unchanged(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    image = read_image(png_of(tmp_path / "a.png", pixels), (1, 28, 28))
    np.testing.assert_array_equal(image.pixels, pixels)
    assert (image.mode, image.size, image.resized) == ("L", (28, 28), False)


def test_colour_becomes_grey_and_grey_becomes_colour(tmp_path):
    rgb = np.zeros((3, 4, 5), dtype=np.uint8)
    rgb[0] = 255  # pure red: luma 299/1000 of 255
    grey = read_image(png_of(tmp_path / "red.png", rgb), (1, 4, 5))
    assert grey.pixels.shape == (1, 4, 5) and np.all(grey.pixels == 76)
    back = read_image(png_of(tmp_path / "grey.png", grey.pixels), (3, 4, 5))
    assert back.pixels.shape == (3, 4, 5) and np.all(back.pixels == 76)


def test_other_sizes_are_resized_and_alpha_dropped(tmp_path):
    PILImage.new("RGBA", (64, 48), (10, 200, 30, 128)).save(tmp_path / "big.png")
    image = read_image(tmp_path / "big.png", (3, 32, 32))
    assert image.pixels.shape == (3, 32, 32) and image.resized
    assert (image.mode, image.size) == ("RGBA", (64, 48))
    assert image.pixels[:, 5, 5].tolist() == [10, 200, 30]  # a flat colour stays itself


def test_jpeg_reads(tmp_path):
    PILImage.new("L", (28, 28), 255).save(tmp_path / "white.jpg")
    assert np.all(read_image(tmp_path / "white.jpg", (1, 28, 28)).pixels >= 254)


def test_a_file_that_is_not_an_image_is_one_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(RunError, match=r"notes.png: not an image file Pillow can read"):
        read_image(tmp_path / "notes.png", (1, 28, 28))


def test_a_truncated_image_is_one_error(tmp_path):
    PILImage.new("L", (64, 64), 7).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    with pytest.raises(RunError, match=r"cut.png: (unreadable image|not an image)"):
        read_image(tmp_path / "cut.png", (1, 28, 28))


def test_folders_give_their_images_in_order_and_missing_paths_are_errors(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in image_files([tmp_path])] == ["a.JPG", "b.png"]
    with pytest.raises(UsageError, match=r"nope\.png: no such file or folder"):
        image_files([tmp_path / "b.png", "nope.png"])
    with pytest.raises(UsageError, match="no image files in this folder"):
        image_files([tmp_path / "sub"])


def test_a_png_of_a_test_image_is_the_loaders_array(tmp_path, unknown_mnist_checksums):
    write_mnist(tmp_path / "mnist", fake_mnist(n_train=40, n_test=6))
    node = data_node("mnist", tmp_path / "mnist", download=False, val_fraction=0.25)
    data = load(node, seed=3)
    raw = mnist.read(node, 3)
    for i in range(len(data.test)):
        image = read_image(png_of(tmp_path / f"{i}.png", raw.x_test[i]), (1, 28, 28))
        x = normalised(image.pixels[None], data.mean, data.std)
        np.testing.assert_array_equal(x[0], data.test.x[i])


@needs_real_mnist
def test_a_png_of_the_first_real_mnist_test_image_is_the_loaders_array(tmp_path):
    node = data_node("mnist", SHARED_MNIST, download=False)
    data = load(node, seed=0)
    raw = mnist.read(node, 0)
    image = read_image(png_of(tmp_path / "seven.png", raw.x_test[0]), (1, 28, 28))
    assert data.test.y[0] == 7
    x = normalised(image.pixels[None], data.mean, data.std)
    np.testing.assert_array_equal(x[0], data.test.x[0])
