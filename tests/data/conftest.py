"""Helpers for the data tests: tiny MNIST and CIFAR files in the original formats, the real
MNIST folder when it is there, and a local HTTP server to download from."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnlab.data import cifar, mnist
from cnnlab.data.augment import Augmentation

SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "mnist"

needs_real_mnist = pytest.mark.skipif(
    not all((SHARED_MNIST / f"{f.stem}.gz").is_file() for f in mnist.FILES),
    reason=f"real MNIST not in {SHARED_MNIST}",
)


# Per-channel statistics of made-up 3-channel images, for the augmentation tests.
MEAN, STD = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.25, 0.2, 0.3], np.float32)


def strengths(*names: str) -> Augmentation:
    """The transforms ``names`` at fixed, clearly visible strengths, for 3-channel images
    with per-channel statistics MEAN and STD."""
    return Augmentation(
        names,
        crop_pad=2,
        rotate_deg=30.0,
        scale=(0.8, 1.2),
        brightness=0.3,
        contrast=0.3,
        saturation=0.3,
        mean=MEAN,
        std=STD,
    )


def data_node(name: str, root: Path | None, **keys):
    """A ``data`` config node as the yamls compose it, for calling the data modules directly."""
    node = {
        "name": name,
        "root": None if root is None else str(root),
        "download": False,
        "classes": None,
        "val_fraction": 0.1,
        "limit": None,
        "augment": False,
        "crop_pad": 4,
        "flip": True,
    }
    return OmegaConf.create(node | keys)


# -- MNIST ------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's content: big-endian header (magic, dims) then the uint8 data."""
    magic = mnist.IMAGE_MAGIC if array.ndim == 3 else mnist.LABEL_MAGIC
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict[str, bytes]:
    """Decompressed contents of the four files, by stem: random digits and labels 0..9."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    return {stem: idx_bytes(a) for stem, a in arrays.items()}


def write_mnist(root: Path, contents: dict[str, bytes], gz: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for stem, content in contents.items():
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (root / stem).write_bytes(content)


@pytest.fixture
def unknown_mnist_checksums(monkeypatch):
    """The fake files are not the official ones: treat their checksums as unknown."""
    files = tuple(dataclasses.replace(f, sha256=None) for f in mnist.FILES)
    monkeypatch.setattr(mnist, "FILES", files)


# -- CIFAR ------------------------------------------------------------------------------------


def cifar_pickle(obj: object, numpy1_names: bool = False) -> bytes:
    """Pickle like the original batches: protocol 2; optionally with numpy 1's module name
    for ``_reconstruct``, as the real files (written long before numpy 2) have it."""
    content = pickle.dumps(obj, protocol=2)
    if numpy1_names:
        # Protocol 2 writes globals as text lines ("c<module>\n<name>\n"): a safe rename.
        content = content.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    return content


def fake_cifar(
    name: str, n_per_batch: int = 12, seed: int = 0, numpy1_names: bool = False
) -> dict[str, bytes]:
    """Contents of every file of a tiny CIFAR-10/100 in the python-version layout, by member
    name: dicts with b'data' (uint8 (N, 3072)) and b'labels'/b'fine_labels', and the meta."""
    spec = cifar.SETS[name]
    rng = np.random.default_rng(seed)
    files = {}
    for i, member in enumerate([*spec.train, spec.test]):
        labels = [int(v) for v in rng.integers(0, spec.num_classes, n_per_batch)]
        batch = {
            b"batch_label": f"batch {i}".encode(),
            spec.label_key: labels,
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n_per_batch)],
        }
        if spec.label_key == b"fine_labels":
            batch[b"coarse_labels"] = [v // 5 for v in labels]
        files[member] = cifar_pickle(batch, numpy1_names)
    names = [f"class_{k}".encode() for k in range(spec.num_classes)]
    files[spec.meta] = cifar_pickle({spec.names_key: names, b"num_vis": 3072}, numpy1_names)
    return files


def write_cifar_folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / cifar.SETS[name].folder
    folder.mkdir(parents=True, exist_ok=True)
    for member, content in files.items():
        (folder / member).write_bytes(content)
    return folder


def cifar_tarball(name: str, files: dict[str, bytes]) -> bytes:
    """The bytes of a .tar.gz laid out as the official archive (members under its folder)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, content in files.items():
            info = tarfile.TarInfo(f"{cifar.SETS[name].folder}/{member}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def unknown_cifar_checksums(monkeypatch):
    """The fake files are not the official ones: treat their checksums as unknown."""
    for name, spec in cifar.SETS.items():
        monkeypatch.setitem(
            cifar.SETS, name, dataclasses.replace(spec, archive_md5=None, file_md5={})
        )


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


# -- a local HTTP server ----------------------------------------------------------------------


@pytest.fixture
def http_root(tmp_path):
    """A folder served on 127.0.0.1 (a free port); yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass
