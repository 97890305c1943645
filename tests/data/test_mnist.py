"""MNIST: the real files (when present) and tiny fakes in the same IDX format."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnlab.data import load, mnist
from cnnlab.errors import RunError

from .conftest import SHARED_MNIST, data_node, fake_mnist, needs_real_mnist, write_mnist

# Per-class counts of the real files (datasets/README.md).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def real():
    """The real MNIST, read once for the module: (file states, Raw)."""
    return mnist.scan(data_node("mnist", SHARED_MNIST))


@needs_real_mnist
def test_real_files_verified_counts_and_pixels(real):
    states, raw = real
    assert [s.status for s in states] == ["verified"] * 4
    assert raw.x_train.shape == (60_000, 1, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (10_000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(raw.y_test).tolist() == TEST_COUNTS
    assert raw.x_train.mean() == pytest.approx(33.3184, abs=5e-5)
    assert raw.x_test.mean() == pytest.approx(33.7912, abs=5e-5)
    assert raw.classes == [str(d) for d in range(10)]


@needs_real_mnist
def test_real_load_splits_and_normalises(real, monkeypatch):
    monkeypatch.setattr(mnist, "scan", lambda data: real)  # reuse the module's read
    data = data_node("mnist", SHARED_MNIST, classes=[3, 8], limit=500)
    ds = load(data, seed=0)
    assert ds.classes == ["3", "8"]
    assert len(ds.train) == len(ds.val) == len(ds.test) == 500  # limit caps every split
    assert set(np.unique(ds.train.y)) == {0, 1}
    assert ds.train.x.dtype == np.float32 and ds.train.x.shape[1:] == (1, 28, 28)
    np.testing.assert_allclose(ds.train.x.mean(), 0, atol=1e-4)
    np.testing.assert_allclose(ds.train.x.std(), 1, atol=1e-4)
    assert ds.mean.shape == (1,) and 0 < ds.mean[0] < 1  # statistics of pixels in [0, 1]


@needs_real_mnist
def test_complete_root_is_never_written(real, tmp_path, monkeypatch):
    # SHARED_MNIST is read-only; a writable copy shows that nothing is added or touched.
    root = tmp_path / "mnist"
    root.mkdir()
    for f in mnist.FILES:
        (root / f"{f.stem}.gz").symlink_to((SHARED_MNIST / f"{f.stem}.gz").resolve())
    before = {p.name: p.lstat().st_mtime_ns for p in root.iterdir()}
    monkeypatch.setattr(mnist, "MIRRORS", ["http://127.0.0.1:9/"])  # would fail if tried
    assert mnist.fetch(data_node("mnist", root, download=True)) == []
    assert {p.name: p.lstat().st_mtime_ns for p in root.iterdir()} == before


@pytest.mark.parametrize("gz", [True, False])
def test_fake_files_gzipped_or_not(tmp_path, unknown_mnist_checksums, gz):
    write_mnist(tmp_path, fake_mnist(n_train=50, n_test=20), gz=gz)
    states, raw = mnist.scan(data_node("mnist", tmp_path))
    assert [s.status for s in states] == ["valid"] * 4  # no official checksum for fakes
    assert raw.x_train.shape == (50, 1, 28, 28) and raw.y_test.shape == (20,)
    ds = load(data_node("mnist", tmp_path, val_fraction=0.2), seed=1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 20)


def test_checksum_mismatch_is_a_run_error(tmp_path):
    write_mnist(tmp_path, fake_mnist())  # the real sha256 table applies
    with pytest.raises(RunError, match=r"sha256 of the content .* is not the official"):
        load(data_node("mnist", tmp_path), seed=0)


@pytest.mark.parametrize(
    ("stem", "corrupt", "message"),
    [
        ("train-images-idx3-ubyte", lambda b: b[:-5], "the header's count 50 needs"),
        ("train-labels-idx1-ubyte", lambda b: b"\x00\x00\x08\x03" + b[4:], "magic number 2051"),
        ("t10k-images-idx3-ubyte", lambda b: b[:8] + b"\x00\x00\x00\x20" + b[12:], "32x28"),
        ("t10k-labels-idx1-ubyte", lambda b: b[:3], "shorter than the IDX header"),
    ],
)
def test_bad_structure_is_a_run_error(tmp_path, unknown_mnist_checksums, stem, corrupt, message):
    contents = fake_mnist()
    contents[stem] = corrupt(contents[stem])
    write_mnist(tmp_path, contents)
    with pytest.raises(RunError, match=message) as info:
        load(data_node("mnist", tmp_path), seed=0)
    assert stem in str(info.value) and "\n" not in str(info.value)


def test_labels_and_images_must_agree(tmp_path, unknown_mnist_checksums):
    contents = fake_mnist(n_train=50)
    contents["train-labels-idx1-ubyte"] = fake_mnist(n_train=40)["train-labels-idx1-ubyte"]
    write_mnist(tmp_path, contents)
    with pytest.raises(RunError, match="40 labels for 50 images"):
        load(data_node("mnist", tmp_path), seed=0)


def test_truncated_gzip_is_a_run_error(tmp_path, unknown_mnist_checksums):
    write_mnist(tmp_path, fake_mnist())
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RunError, match="unreadable"):
        load(data_node("mnist", tmp_path), seed=0)


def test_missing_files_without_download_say_what_to_put_where(tmp_path, unknown_mnist_checksums):
    contents = fake_mnist()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(contents["train-labels-idx1-ubyte"])
    )
    with pytest.raises(RunError) as info:
        load(data_node("mnist", tmp_path, download=False), seed=0)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train-labels-idx1-ubyte.gz" not in message  # present: not asked for
    assert str(tmp_path.resolve()) in message and "data.download=true" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-labels-idx1-ubyte.gz"]


def test_every_missing_or_bad_file_is_named(tmp_path, unknown_mnist_checksums):
    contents = fake_mnist(n_train=50)
    contents["train-labels-idx1-ubyte"] = fake_mnist(n_train=40)["train-labels-idx1-ubyte"]
    contents["t10k-images-idx3-ubyte"] = contents["t10k-images-idx3-ubyte"][:-5]
    del contents["t10k-labels-idx1-ubyte"]
    write_mnist(tmp_path, contents)
    with pytest.raises(RunError) as info:
        load(data_node("mnist", tmp_path, download=False), seed=0)
    message = str(info.value)
    assert message.startswith(f"MNIST files missing or bad in {tmp_path.resolve()}: ")
    assert "train-labels-idx1-ubyte.gz bad (40 labels for 50 images)" in message
    assert "t10k-images-idx3-ubyte.gz bad (not an MNIST IDX file: " in message
    assert "t10k-labels-idx1-ubyte.gz missing" in message
    assert "train-images-idx3-ubyte.gz" not in message  # the one good file
    assert "data.download=true" in message and "delete them, then `cnnlab data download" in message
    assert "\n" not in message
