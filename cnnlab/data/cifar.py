"""``data=cifar10`` and ``data=cifar100``: the "python version" batches, extracted or as the
official ``.tar.gz`` (read straight from the archive, never extracted).

Each batch is a pickle (protocol 2, written by Python 2) of a dict: ``b'data'``, a uint8
ndarray (N, 3072) of channel-major 32×32 RGB images, and ``b'labels'`` (CIFAR-10) or
``b'fine_labels'`` (CIFAR-100); the meta file holds the class names. Pickles can run code, so
they are read with :class:`RestrictedUnpickler`, which builds numpy arrays and nothing else.

Files are checked by structure and against the official md5s (the archive's, or each extracted
file's, as torchvision lists them); files that match get the official counts checked too.
"""

from __future__ import annotations

import _codecs
import hashlib
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.data import FileState, Raw, describe_unusable
from cnnlab.data.download import fetch as download
from cnnlab.data.download import file_digest
from cnnlab.errors import RunError

if TYPE_CHECKING:
    from cnnlab.schema import DataConfig

SIDE = 32  # images are 3 × SIDE × SIDE


@dataclass(frozen=True)
class CifarSet:
    """Where one CIFAR data set's files are, what they hold, and their official checksums."""

    folder: str  # the extracted folder in data.root, and the archive's top folder
    archive: str  # the official archive's file name
    archive_md5: str | None  # None: unknown (not checked)
    urls: tuple[str, ...]
    train: tuple[str, ...]  # batch files of the training set, in order
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    file_md5: dict[str, str]  # of each extracted file; a file not listed is not checked
    counts: tuple[int, int] = (50_000, 10_000)  # train, test in the official files


SETS = {
    "cifar10": CifarSet(
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test="test_batch",
        meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        num_classes=10,
        file_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
    "cifar100": CifarSet(
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        train=("train",),
        test="test",
        meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        num_classes=100,
        file_md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# Exactly what the real batches need: an ndarray is pickled as _reconstruct(ndarray, ...) plus
# a dtype, and Python 3 writes bytes at protocol 2 as _codecs.encode(str, 'latin1'). The numpy
# 1 name is mapped to the function itself, so no deprecated module is imported.
ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside :data:`ALLOWED`."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`ALLOWED`; any other is refused
    before it is imported, so a crafted pickle cannot call ``os.system`` and the like."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"refused to load global {module}.{name}: CIFAR batches hold only numpy arrays"
            ) from None


def unpickle(content: bytes) -> Any:
    """Load a CIFAR pickle with :class:`RestrictedUnpickler`; byte strings stay bytes."""
    return RestrictedUnpickler(io.BytesIO(content), encoding="bytes").load()


# ---------------------------------------------------------------------------------------------
# Reading and checking
# ---------------------------------------------------------------------------------------------


def _batch(content: bytes, spec: CifarSet) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one batch; ValueError if bad."""
    entry = _dict(content)
    images, labels = entry.get(b"data"), entry.get(spec.label_key)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError("no uint8 array under b'data'")
    if images.ndim != 2 or images.shape[1] != 3 * SIDE * SIDE:
        raise ValueError(f"b'data' of shape {images.shape}, expected (N, {3 * SIDE * SIDE})")
    if labels is None:
        raise ValueError(f"no labels under {spec.label_key!r}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"{labels.shape} labels for {len(images)} images")
    if labels.size and not 0 <= labels.min() <= labels.max() < spec.num_classes:
        raise ValueError(f"labels outside 0..{spec.num_classes - 1}")
    return images.reshape(-1, 3, SIDE, SIDE), labels.astype(np.int64)


def _names(content: bytes, spec: CifarSet) -> list[str]:
    """The class names in the meta file; ValueError if bad."""
    names = _dict(content).get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise ValueError(f"no list of {spec.num_classes} names under {spec.names_key!r}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _dict(content: bytes) -> dict:
    try:
        entry = unpickle(content)
    except RefusedGlobal as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # a truncated or garbled pickle fails in many ways
        raise ValueError(f"not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"a pickled {type(entry).__name__}, expected a dict")
    return entry


def _members(spec: CifarSet) -> list[str]:
    return [*spec.train, spec.test, spec.meta]


def _judge(
    spec: CifarSet,
    contents: dict[str, bytes],
    checksums: dict[str, bool | None],
    where: Callable[[str], Path],
    absent: str,
) -> tuple[list[FileState], Raw | None]:
    """Check every member: present, checksum (True: official, None: unknown, False: wrong),
    structure; then the data set as a whole. One state per member, and the data if all good.

    ``where`` gives a member's path for the report; ``absent`` says what a missing one means.
    """
    states: list[FileState] = []
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: list[str] = []
    for member in _members(spec):
        path, content, checksum = where(member), contents.get(member), checksums.get(member)
        if content is None:
            states.append(FileState(path, "missing", absent))
            continue
        if checksum is False:
            states.append(FileState(path, "bad", "md5 is not the official one (corrupt?)"))
            continue
        try:
            if member == spec.meta:
                names = _names(content, spec)
                what = f"{len(names)} class names"
            else:
                batches[member] = _batch(content, spec)
                what = f"{len(batches[member][1])} images 3x{SIDE}x{SIDE}"
        except ValueError as exc:
            states.append(FileState(path, "bad", f"not a CIFAR {member} file: {exc}"))
            continue
        status, check = ("verified", "md5 verified") if checksum else ("valid", "no official md5")
        states.append(FileState(path, status, f"{what}; {check}"))
    if not all(s.usable for s in states):
        return states, None
    x_train = np.concatenate([batches[m][0] for m in spec.train])
    y_train = np.concatenate([batches[m][1] for m in spec.train])
    x_test, y_test = batches[spec.test]
    # Official checksums imply official counts; checked all the same, as a cheap guard.
    if all(checksums.get(m) for m in _members(spec)) and (len(y_train), len(y_test)) != spec.counts:
        detail = f"{len(y_train)} train and {len(y_test)} test images, expected {spec.counts}"
        return [*states[:-1], FileState(states[-1].path, "bad", detail)], None
    return states, Raw(names, x_train, y_train, x_test, y_test)


def _scan_folder(root: Path, spec: CifarSet) -> tuple[list[FileState], Raw | None]:
    """Check the extracted files in ``root / spec.folder``, each against its official md5."""
    folder = root / spec.folder
    contents, checksums = {}, {}
    for member in _members(spec):
        path = folder / member
        if path.is_file():
            contents[member] = path.read_bytes()
            official = spec.file_md5.get(member)
            checksums[member] = None if official is None else _md5(contents[member]) == official
    return _judge(
        spec, contents, checksums, lambda m: folder / m, f"or the archive {root / spec.archive}"
    )


def _scan_archive(archive: Path, spec: CifarSet) -> tuple[list[FileState], Raw | None]:
    """Check the official archive (its md5) and the members it holds, read without extracting."""
    md5 = file_digest(archive, "md5")
    if spec.archive_md5 is not None and md5 != spec.archive_md5:
        detail = f"md5 {md5} is not the official {spec.archive_md5} (corrupt or incomplete)"
        return [FileState(archive, "bad", detail)], None
    wanted = {f"{spec.folder}/{m}": m for m in _members(spec)}
    contents = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:  # one pass through the stream, no seeking back
                member = wanted.get(info.name)
                stream = tar.extractfile(info) if member and info.isfile() else None
                if stream is not None:
                    contents[member] = stream.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        return [FileState(archive, "bad", f"unreadable archive: {exc}")], None
    official = spec.archive_md5 is not None
    head = FileState(
        archive,
        "verified" if official else "valid",
        "md5 of the archive verified" if official else "no official md5",
    )
    states, raw = _judge(
        spec,
        contents,
        dict.fromkeys(contents, True if official else None),
        lambda m: archive / spec.folder / m,
        "not in the archive",
    )
    return [head, *states], raw


def _md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def _extracted(root: Path, spec: CifarSet) -> bool:
    """Whether every file is in the extracted folder."""
    return all((root / spec.folder / m).is_file() for m in _members(spec))


def _complete(root: Path, spec: CifarSet) -> bool:
    """Whether the files are there, extracted (all of them) or as the archive."""
    return _extracted(root, spec) or (root / spec.archive).is_file()


def scan(data: DataConfig) -> tuple[list[FileState], Raw | None]:
    """What is in ``data.root``: one state per file, and the data if all are good.

    The extracted folder is used when complete, else the archive. Downloads and writes nothing.
    """
    spec, root = SETS[data.name], Path(data.root).expanduser()
    archive = root / spec.archive
    if _extracted(root, spec) or not archive.is_file():
        return _scan_folder(root, spec)
    return _scan_archive(archive, spec)


def fetch(data: DataConfig) -> list[Path]:
    """Download the official archive unless the files are there; return what was fetched.

    Raises RunError saying which files to put where when the download fails.
    """
    spec, root = SETS[data.name], Path(data.root).expanduser()
    if _complete(root, spec):
        return []
    if spec.archive_md5 is None:
        raise RunError(
            f"no official md5 to check a download of {spec.archive}; {_put_there(root, spec)}"
        )
    try:
        return [download(spec.urls, root / spec.archive, spec.archive_md5)]
    except RunError as exc:
        raise RunError(f"{exc}; {_put_there(root, spec)}") from None


def read(data: DataConfig, seed: int) -> Raw:
    """The train and test splits in ``data.root``, downloading the archive if allowed.

    ``seed`` is unused. Raises RunError, one line, for files missing (and not downloadable) or
    bad, naming every bad one.
    """
    del seed
    spec, root = SETS[data.name], Path(data.root).expanduser()
    if not _complete(root, spec):
        if not data.download:
            raise RunError(
                f"{data.name} files missing; {_put_there(root, spec)}, or set data.download=true"
            )
        fetch(data)
    states, raw = scan(data)
    if raw is None:
        raise RunError(explain(data, states))
    return raw


def explain(data: DataConfig, states: list[FileState]) -> str:
    """The RunError line for ``states`` from :func:`scan` that are not all usable: every file
    missing or bad, then how to replace them.

    A file missing here is one the archive lacks (:func:`read` reports a missing archive and
    folder before scanning), so the remedy for both kinds is a new copy of the files.
    """
    root = Path(data.root).expanduser().resolve()
    return (
        f"{describe_unusable(data.name, root, states)}; replace them (delete the bad files, or the "
        f"archive that holds them, then `cnnlab data download data={data.name} "
        f"data.root={root}`)"
    )


def _put_there(root: Path, spec: CifarSet) -> str:
    return f"put {spec.archive} (or its extracted {spec.folder}/) in {root.resolve()}"
