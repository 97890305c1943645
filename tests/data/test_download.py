"""Downloads from a local HTTP server: verified files land atomically; corrupt or failed
downloads leave nothing behind and end in one line saying which files to put where."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib

import numpy as np
import pytest

from cnnlab.data import cifar, load, mnist
from cnnlab.data.download import fetch
from cnnlab.errors import RunError

from .conftest import cifar_tarball, data_node, fake_cifar, fake_mnist, md5

CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port: nothing listens, the connection fails


def serve_mnist(served, contents, monkeypatch, base, md5s=None):
    """Serve gzipped fake MNIST files under ``good/``, and make them the official ones
    (checksums and counts); ``missing/`` is a mirror that answers 404."""
    (served / "good").mkdir()
    files = []
    for f in mnist.FILES:
        gz = gzip.compress(contents[f.stem])
        (served / "good" / f"{f.stem}.gz").write_bytes(gz)
        sha = hashlib.sha256(contents[f.stem]).hexdigest()
        gz_md5 = md5(gz) if md5s is None else md5s
        count = int.from_bytes(contents[f.stem][4:8], "big")  # the IDX header's count
        files.append(dataclasses.replace(f, sha256=sha, gz_md5=gz_md5, count=count))
    monkeypatch.setattr(mnist, "FILES", tuple(files))
    monkeypatch.setattr(mnist, "MIRRORS", [f"{base}missing/", f"{base}good/"])


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_mnist_downloads_from_the_first_mirror_that_has_it(http_root, tmp_path, monkeypatch):
    served, base = http_root
    contents = fake_mnist(n_train=30, n_test=10)
    serve_mnist(served, contents, monkeypatch, base)
    root = tmp_path / "data" / "mnist"
    ds = load(data_node("mnist", root, download=True), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (27, 3, 10)
    assert leftovers(root) == sorted(f"{f.stem}.gz" for f in mnist.FILES)  # no temp files
    states, _ = mnist.scan(data_node("mnist", root))
    assert [s.status for s in states] == ["verified"] * 4
    # Complete now: nothing more is fetched, even with the server gone.
    monkeypatch.setattr(mnist, "MIRRORS", [CLOSED_PORT_URL])
    assert mnist.fetch(data_node("mnist", root, download=True)) == []


def test_corrupt_download_is_discarded(http_root, tmp_path, monkeypatch):
    served, base = http_root
    serve_mnist(served, fake_mnist(), monkeypatch, base, md5s="0" * 32)  # nothing matches
    root = tmp_path / "mnist"
    with pytest.raises(RunError) as info:
        load(data_node("mnist", root, download=True), seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert f"{base}missing/train-images-idx3-ubyte.gz (HTTP 404)" in message
    assert f"{base}good/train-images-idx3-ubyte.gz (md5 " in message and "corrupt" in message
    assert f"in {root.resolve()}" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert not root.exists()  # neither the file nor a temporary one, nor the folder


def test_offline_says_which_files_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", [CLOSED_PORT_URL])
    root = tmp_path / "mnist"
    with pytest.raises(RunError) as info:
        load(data_node("mnist", root, download=True), seed=0)
    message = str(info.value)
    assert message.startswith(
        "could not download train-images-idx3-ubyte.gz from http://127.0.0.1:9/"
    )
    names = [f"{f.stem}.gz" for f in mnist.FILES]
    assert f"put {', '.join(names)} (gzipped or not) in {root.resolve()}" in message
    assert not root.exists()


def test_fetch_tries_the_next_url_after_a_corrupt_one(http_root, tmp_path):
    served, base = http_root
    good = b"the real content" * 1000
    (served / "bad.bin").write_bytes(b"something else")
    (served / "good.bin").write_bytes(good)
    dest = tmp_path / "out" / "file.bin"
    assert fetch([f"{base}bad.bin", f"{base}good.bin"], dest, md5(good)) == dest
    assert dest.read_bytes() == good
    assert leftovers(dest.parent) == ["file.bin"]


def test_cifar_archive_downloads_and_loads_without_extracting(http_root, tmp_path, monkeypatch):
    served, base = http_root
    archive = cifar_tarball("cifar10", fake_cifar("cifar10", n_per_batch=4))
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    spec = dataclasses.replace(
        cifar.SETS["cifar10"],
        urls=(f"{base}nowhere.tar.gz", f"{base}cifar-10-python.tar.gz"),
        archive_md5=md5(archive),
        counts=(20, 4),
    )
    monkeypatch.setitem(cifar.SETS, "cifar10", spec)
    root = tmp_path / "cifar10"
    ds = load(data_node("cifar10", root, download=True, val_fraction=0.25), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (15, 5, 4)
    assert leftovers(root) == ["cifar-10-python.tar.gz"]
    assert np.isfinite(ds.train.x).all()


def test_corrupt_cifar_archive_leaves_nothing(http_root, tmp_path, monkeypatch):
    served, base = http_root
    (served / "cifar-100-python.tar.gz").write_bytes(b"not an archive")
    spec = dataclasses.replace(cifar.SETS["cifar100"], urls=(f"{base}cifar-100-python.tar.gz",))
    monkeypatch.setitem(cifar.SETS, "cifar100", spec)
    root = tmp_path / "cifar100"
    with pytest.raises(RunError, match="eb9058c3a382ffc7106e4002c42a8d85: corrupt download"):
        load(data_node("cifar100", root, download=True), seed=0)
    assert leftovers(root) == []
