"""``data=mnist``: the four original IDX files, gzipped or not, in ``data.root``.

IDX (all integers big-endian): images are int32 magic 2051, count, rows, cols, then
count·rows·cols uint8 pixels row-major; labels are int32 magic 2049, count, then count uint8
labels. A file on disk is checked by its structure and by the sha256 of its decompressed content
(so a re-gzipped copy of the original is as good as the original); a download is checked by the
published md5 of the official ``.gz`` archive.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data import FileState, Raw, describe_unusable
from cnnlab.data.download import fetch as download
from cnnlab.errors import RunError

if TYPE_CHECKING:
    from cnnlab.schema import DataConfig

CLASSES = [str(d) for d in range(10)]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
ROWS = COLS = 28

# Tried in order; torchvision lists the same two.
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name without ``.gz`` and what is known about it."""

    stem: str
    magic: int
    count: int  # in the official file
    sha256: str | None  # of the decompressed content; None: unknown (not checked)
    gz_md5: str  # of the official .gz, as published: downloads are checked against it


FILES = (
    IdxFile(
        "train-images-idx3-ubyte",
        IMAGE_MAGIC,
        60_000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "f68b3c2dcbeaceb0e0e0b0a0f3b5c5c4",
    ),
    IdxFile(
        "train-labels-idx1-ubyte",
        LABEL_MAGIC,
        60_000,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    IdxFile(
        "t10k-images-idx3-ubyte",
        IMAGE_MAGIC,
        10_000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    IdxFile(
        "t10k-labels-idx1-ubyte",
        LABEL_MAGIC,
        10_000,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
)


def locate(root: Path, file: IdxFile) -> Path | None:
    """The file in ``root``, uncompressed (read faster) or else gzipped; None if absent."""
    for name in (file.stem, f"{file.stem}.gz"):
        if (root / name).is_file():
            return root / name
    return None


def parse_idx(content: bytes, file: IdxFile) -> np.ndarray:
    """The array in an IDX file's decompressed ``content``: (N, 28, 28) images or (N,) labels,
    uint8. Raises ValueError saying what is wrong with the structure."""
    header = 16 if file.magic == IMAGE_MAGIC else 8
    if len(content) < header:
        raise ValueError(f"{len(content)} bytes, shorter than the IDX header")
    magic, *dims = np.frombuffer(content, ">i4", count=header // 4)
    if magic != file.magic:
        raise ValueError(f"magic number {magic}, expected {file.magic}")
    if file.magic == IMAGE_MAGIC and (dims[1], dims[2]) != (ROWS, COLS):
        raise ValueError(f"images of {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(content) != expected:
        raise ValueError(f"{len(content)} bytes, the header's count {dims[0]} needs {expected}")
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims)


def check_file(path: Path, file: IdxFile) -> tuple[FileState, np.ndarray | None]:
    """Validate one file on disk: decompress, checksum, structure. Never raises for bad data."""
    try:
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        return FileState(path, "bad", f"unreadable: {exc}"), None
    sha256 = hashlib.sha256(content).hexdigest()
    if file.sha256 is not None and sha256 != file.sha256:
        detail = f"sha256 of the content {sha256[:16]}… is not the official {file.sha256[:16]}…"
        return FileState(path, "bad", f"{detail} (corrupt or a different file)"), None
    try:
        array = parse_idx(content, file)
    except ValueError as exc:
        return FileState(path, "bad", f"not an MNIST IDX file: {exc}"), None
    if file.sha256 is not None and len(array) != file.count:  # cannot happen with the right sha
        return FileState(path, "bad", f"{len(array)} items, expected {file.count}"), None
    what = f"{len(array)} images {ROWS}x{COLS}" if array.ndim == 3 else f"{len(array)} labels"
    if file.sha256 is None:
        return FileState(path, "valid", f"{what}; no official sha256 to check"), array
    return FileState(path, "verified", f"{what}; sha256 of the content verified"), array


def scan(data: DataConfig) -> tuple[list[FileState], Raw | None]:
    """What is in ``data.root``: one state per file, and the data if all are good.

    Downloads nothing and writes nothing.
    """
    root = Path(data.root).expanduser()
    states, arrays = [], []
    for file in FILES:
        path = locate(root, file)
        if path is None:
            states.append(FileState(root / f"{file.stem}.gz", "missing", "gzipped or not"))
            arrays.append(None)
            continue
        state, array = check_file(path, file)
        states.append(state)
        arrays.append(array)
    # Each pair (train, test) whose two files read is checked as a pair, even when another
    # file is bad, so that every problem is reported at once.
    for i in (0, 2):
        images, labels = arrays[i], arrays[i + 1]
        problem = None if images is None or labels is None else _mismatch(images, labels)
        if problem:
            states[i + 1] = FileState(states[i + 1].path, "bad", problem)
            arrays[i + 1] = None
    if any(a is None for a in arrays):
        return states, None
    x_train, y_train, x_test, y_test = arrays
    return states, Raw(
        CLASSES,
        x_train[:, None],  # (N, 1, 28, 28)
        y_train.astype(np.int64),
        x_test[:, None],
        y_test.astype(np.int64),
    )


def _mismatch(images: np.ndarray, labels: np.ndarray) -> str | None:
    """What is wrong with a pair of image and label files taken together, if anything."""
    if len(images) != len(labels):
        return f"{len(labels)} labels for {len(images)} images"
    if labels.size and labels.max() >= len(CLASSES):
        return f"label {labels.max()} out of range 0..{len(CLASSES) - 1}"
    return None


def fetch(data: DataConfig) -> list[Path]:
    """Download the files missing from ``data.root`` (archives verified by md5); return them.

    Writes nothing when all four are present. Raises RunError saying which files to put
    where when a download fails.
    """
    root = Path(data.root).expanduser()
    missing = [f for f in FILES if locate(root, f) is None]
    fetched = []
    for file in missing:
        name = f"{file.stem}.gz"
        try:
            fetched.append(download([m + name for m in MIRRORS], root / name, file.gz_md5))
        except RunError as exc:
            raise RunError(f"{exc}; {_put_there(root, missing)}") from None
    return fetched


def read(data: DataConfig, seed: int) -> Raw:
    """The train and test splits in ``data.root``, downloading missing files if allowed.

    ``seed`` is unused (the files are the files). Raises RunError, one line naming every file
    missing (and not downloadable) or bad.
    """
    del seed
    root = Path(data.root).expanduser()
    if data.download and any(locate(root, f) is None for f in FILES):
        fetch(data)
    states, raw = scan(data)
    if raw is None:
        raise RunError(explain(data, states))
    return raw


def explain(data: DataConfig, states: list[FileState]) -> str:
    """The RunError line for ``states`` from :func:`scan` that are not all usable: every file
    missing or bad, then what to do about each kind."""
    root = Path(data.root).expanduser().resolve()
    remedies = []
    if any(s.status == "missing" for s in states):
        remedies.append(f"put the missing ones in {root}, or set data.download=true")
    if any(s.status == "bad" for s in states):
        remedies.append(
            "replace the bad ones (delete them, then "
            f"`cnnlab data download data=mnist data.root={root}`)"
        )
    return "; ".join([describe_unusable("MNIST", root, states), *remedies])


def _put_there(root: Path, missing: list[IdxFile]) -> str:
    names = ", ".join(f"{f.stem}.gz" for f in missing)
    return f"put {names} (gzipped or not) in {root.resolve()}"
