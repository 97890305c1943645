"""CIFAR-10/100: python-version batches, extracted or as the .tar.gz, read by a restricted
unpickler. The files here are written the way the originals are (protocol 2 pickles with the
same globals), so passing tests mean the real files load."""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle

import numpy as np
import pytest

from cnnlab.data import cifar, load
from cnnlab.errors import RunError

from .conftest import (
    cifar_pickle,
    cifar_tarball,
    data_node,
    fake_cifar,
    md5,
    write_cifar_folder,
)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("numpy1_names", [True, False])
def test_extracted_folder_loads(tmp_path, unknown_cifar_checksums, name, numpy1_names):
    files = fake_cifar(name, n_per_batch=12, numpy1_names=numpy1_names)
    write_cifar_folder(tmp_path, name, files)
    states, raw = cifar.scan(data_node(name, tmp_path))
    assert [s.status for s in states] == ["valid"] * len(files)
    spec = cifar.SETS[name]
    assert raw.x_train.shape == (12 * len(spec.train), 3, 32, 32)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    assert raw.x_test.shape == (12, 3, 32, 32)
    assert raw.classes[:2] == ["class_0", "class_1"] and len(raw.classes) == spec.num_classes
    # The pixels are the pickled rows, channel-major: R plane, then G, then B.
    first = pickle.loads(files[spec.train[0]], encoding="bytes")[b"data"][0]
    np.testing.assert_array_equal(raw.x_train[0].reshape(-1), first)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_tarball_is_read_without_extracting(tmp_path, unknown_cifar_checksums, name):
    files = fake_cifar(name, n_per_batch=10)
    spec = cifar.SETS[name]
    (tmp_path / spec.archive).write_bytes(cifar_tarball(name, files))
    ds = load(data_node(name, tmp_path, val_fraction=0.0), seed=0)
    assert len(ds.train) == 10 * len(spec.train) and len(ds.test) == 10
    assert [p.name for p in tmp_path.iterdir()] == [spec.archive]  # nothing extracted
    assert ds.train.x.shape[1:] == (3, 32, 32) and ds.train.x.dtype == np.float32


def test_class_subset_of_cifar100_relabels_in_the_given_order(tmp_path, unknown_cifar_checksums):
    files = fake_cifar("cifar100", n_per_batch=400)
    write_cifar_folder(tmp_path, "cifar100", files)
    ds = load(data_node("cifar100", tmp_path, classes=[9, 3, 7], val_fraction=0.0), seed=0)
    assert ds.classes == ["class_9", "class_3", "class_7"]
    original = np.asarray(pickle.loads(files["train"], encoding="bytes")[b"fine_labels"])
    kept = original[np.isin(original, [9, 3, 7])]
    assert len(ds.train) == len(kept)
    np.testing.assert_array_equal(ds.train.y, [{9: 0, 3: 1, 7: 2}[v] for v in kept])


def test_official_checksum_brings_the_official_counts(tmp_path, monkeypatch):
    # A tiny archive that claims to be the official one (its md5 listed) fails the count check.
    files = fake_cifar("cifar10", n_per_batch=5)
    content = cifar_tarball("cifar10", files)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(content)
    spec = dataclasses.replace(cifar.SETS["cifar10"], archive_md5=md5(content))
    monkeypatch.setitem(cifar.SETS, "cifar10", spec)
    with pytest.raises(RunError, match=r"25 train and 5 test images, expected \(50000, 10000\)"):
        load(data_node("cifar10", tmp_path), seed=0)


def test_archive_with_wrong_md5_is_a_run_error(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(
        cifar_tarball("cifar10", fake_cifar("cifar10"))
    )
    with pytest.raises(RunError, match="is not the official c58f30108f718f92721af3b95e74349a"):
        load(data_node("cifar10", tmp_path), seed=0)


def test_extracted_files_with_wrong_md5_are_all_named(tmp_path):
    write_cifar_folder(tmp_path, "cifar10", fake_cifar("cifar10"))  # official md5s apply
    with pytest.raises(RunError) as info:
        load(data_node("cifar10", tmp_path), seed=0)
    message = str(info.value)
    assert message.startswith(f"cifar10 files missing or bad in {tmp_path.resolve()}: ")
    for member in [*cifar.SETS["cifar10"].train, "test_batch", "batches.meta"]:
        assert f"cifar-10-batches-py/{member} bad (md5 is not the official one" in message


class Evil:
    """Unpickling this runs a shell command, unless the unpickler refuses ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path, unknown_cifar_checksums):
    marker = tmp_path / "pwned"
    files = fake_cifar("cifar10")
    files["data_batch_3"] = pickle.dumps({b"data": Evil(marker)}, protocol=2)
    # The crafted pickle is real: a plain unpickler runs its command.
    plain = tmp_path / "plain"
    pickle.loads(pickle.dumps(Evil(plain), protocol=2))
    assert plain.exists()
    write_cifar_folder(tmp_path, "cifar10", files)
    with pytest.raises(
        RunError, match=r"data_batch_3 bad \(.*refused to load global (posix|nt)\.system"
    ):
        load(data_node("cifar10", tmp_path), seed=0)
    assert not marker.exists()


def test_unpickler_allows_exactly_the_numpy_globals():
    assert set(cifar.ALLOWED) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(cifar.unpickle(cifar_pickle({b"a": array}))[b"a"], array)
    for obj in (np.float64(1.5), collections.OrderedDict(a=1), {1, 2}, os.system):
        with pytest.raises(pickle.UnpicklingError, match="refused to load global"):
            cifar.unpickle(pickle.dumps(obj, protocol=2))


@pytest.mark.parametrize(
    ("member", "batch", "message"),
    [
        ("data_batch_2", {b"labels": [1]}, "no uint8 array under b'data'"),
        (
            "data_batch_2",
            {b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]},
            r"b'data' of shape \(2, 100\)",
        ),
        ("test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels for 2"),
        ("test_batch", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "outside 0..9"),
        ("batches.meta", {b"label_names": [b"a", b"b"]}, "no list of 10 names"),
        ("data_batch_4", [1, 2, 3], "a pickled list, expected a dict"),
    ],
)
def test_bad_structure_is_a_run_error(tmp_path, unknown_cifar_checksums, member, batch, message):
    files = fake_cifar("cifar10")
    files[member] = cifar_pickle(batch)
    write_cifar_folder(tmp_path, "cifar10", files)
    with pytest.raises(RunError, match=message) as info:
        load(data_node("cifar10", tmp_path), seed=0)
    assert member in str(info.value) and "\n" not in str(info.value)


def test_truncated_batch_is_a_run_error(tmp_path, unknown_cifar_checksums):
    files = fake_cifar("cifar10")
    files["data_batch_1"] = files["data_batch_1"][:500]
    write_cifar_folder(tmp_path, "cifar10", files)
    with pytest.raises(RunError, match=r"data_batch_1 bad \(.*not a readable pickle"):
        load(data_node("cifar10", tmp_path), seed=0)


def test_missing_files_without_download_say_what_to_put_where(tmp_path):
    with pytest.raises(RunError) as info:
        load(data_node("cifar100", tmp_path, download=False), seed=0)
    message = str(info.value)
    assert "cifar-100-python.tar.gz" in message and "cifar-100-python/" in message
    assert str(tmp_path.resolve()) in message
    assert list(tmp_path.iterdir()) == []
