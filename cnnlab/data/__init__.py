"""Data sets for training: ``shapes`` (generated), ``mnist``, ``cifar10`` and ``cifar100``.

:func:`load` turns the composed ``data`` config node into a :class:`Dataset`: train, val and
test splits of normalised float32 images with int64 labels. Each source module reads its own
format into a :class:`Raw` (the official train and test splits, as stored); what follows is the
same for all of them:

1. ``data.classes`` keeps a subset of classes, relabelled 0..k-1 in the order given, or
   ``data.random_classes`` keeps k classes drawn from the seed, relabelled in index order;
2. ``data.val_fraction`` of the training set, drawn from the seed, becomes the val split;
3. ``data.limit`` caps every split;
4. the per-channel mean and std of the train split normalise all three.

Random draws here and in :mod:`cnnlab.data.shapes` use three-word seeds ``[seed, DATA_STREAM,
n]``, apart from the trainer's ``[seed, epoch]`` batch orders and ``[seed, epoch, step, 1]``
augmentations.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import UsageError

if TYPE_CHECKING:
    from cnnlab.schema import DataConfig

DATA_STREAM = 0xDA7A  # the middle word of every seed drawn in cnnlab.data
VAL_SPLIT_ID = 2  # shapes uses 0 (train) and 1 (test)
CLASS_DRAW_ID = 3  # data.random_classes

# data.name -> (the module that reads it, its class count before any data.classes subset)
SOURCES: dict[str, tuple[str, int]] = {
    "shapes": ("cnnlab.data.shapes", 6),
    "mnist": ("cnnlab.data.mnist", 10),
    "cifar10": ("cnnlab.data.cifar", 10),
    "cifar100": ("cnnlab.data.cifar", 100),
}


@dataclass(frozen=True)
class Split:
    """One split of a data set: ``x`` (N, C, H, W) float32, normalised per channel; ``y`` (N,)
    int64 labels in 0..K-1."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A data set ready for training.

    ``classes`` are the class names after any ``data.classes`` subset (index = label);
    ``mean`` and ``std`` (C,) float32 are the per-channel statistics of the train split (val
    taken out, pixels scaled to [0, 1]) that every split was normalised with.
    """

    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    mean: np.ndarray
    std: np.ndarray

    @property
    def inputs(self) -> Inputs:
        """What a model trained on this data set expects of an image (kept in checkpoints)."""
        c, h, w = self.train.x.shape[1:]
        return Inputs(self.name, list(self.classes), (c, h, w), self.mean, self.std)

    def astype(self, dtype: np.dtype | type) -> Dataset:
        """The same data set with every split's images in ``dtype`` (e.g. float64 runs)."""
        return replace(
            self,
            train=replace(self.train, x=self.train.x.astype(dtype)),
            val=replace(self.val, x=self.val.x.astype(dtype)),
            test=replace(self.test, x=self.test.x.astype(dtype)),
        )


@dataclass(frozen=True)
class Inputs:
    """What a trained model expects of an image, without the data set: the data set's name,
    the class names (index = label), the input ``shape`` (C, H, W) and the per-channel
    ``mean`` and ``std`` (C,) float32 that :func:`normalised` takes. Checkpoints record it,
    so ``cnnlab predict`` needs no data files.
    """

    name: str
    classes: list[str]
    shape: tuple[int, int, int]
    mean: np.ndarray
    std: np.ndarray

    def record(self) -> dict[str, Any]:
        """As JSON values (float32 statistics as Python floats, which keep them exactly)."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "shape": list(self.shape),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Inputs:
        """The inverse of :meth:`record`; KeyError, TypeError or ValueError if malformed."""
        c, h, w = (int(n) for n in record["shape"])
        mean = np.array(record["mean"], np.float32)
        std = np.array(record["std"], np.float32)
        classes = [str(name) for name in record["classes"]]
        if mean.shape != (c,) or std.shape != (c,) or not classes:
            raise ValueError(
                f"{c} channels, but mean {mean.shape}, std {std.shape}, {len(classes)} classes"
            )
        return cls(str(record["name"]), classes, (c, h, w), mean, std)


@dataclass(frozen=True)
class Raw:
    """A data set as stored: the official train and test splits, all classes.

    ``x_*`` (N, C, H, W) are uint8 pixels (0..255) or float32 in [0, 1]; ``y_*`` (N,) int64.
    """

    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class FileState:
    """What ``cnnlab data info`` says about one file.

    ``status`` is ``verified`` (structure and official checksum good), ``valid`` (structure
    good, no official checksum known), ``missing`` or ``bad``; ``detail`` gives counts,
    shapes and the checksum, or what is wrong.
    """

    path: Path
    status: str
    detail: str

    @property
    def usable(self) -> bool:
        return self.status in ("verified", "valid")


def shown_path(path: Path, root: Path) -> str:
    """``path`` as reports show it: relative to ``root`` (resolved) when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def describe_unusable(title: str, root: Path, states: Iterable[FileState]) -> str:
    """``<title> files missing or bad in <root>: <file> <status> (<detail>); ...``: one line
    naming every file of ``states`` that is not usable, as ``cnnlab data info`` lists them, so
    that one attempt shows everything there is to fix."""
    root = root.expanduser().resolve()
    problems = (
        f"{shown_path(s.path, root)} {s.status} ({s.detail})" for s in states if not s.usable
    )
    return f"{title} files missing or bad in {root}: {'; '.join(problems)}"


def source(name: str) -> ModuleType:
    """The module that reads ``data.name``: it provides ``read(data, seed) -> Raw`` and, for
    data sets on disk, ``scan(data)``, ``fetch(data)`` and ``explain(data, states)`` (the
    RunError line for files that ``scan`` found missing or bad)."""
    if name not in SOURCES:
        raise ValueError(f"data={name}: no such data set; choose from {', '.join(SOURCES)}")
    return importlib.import_module(SOURCES[name][0])


# ---------------------------------------------------------------------------------------------
# Config: the class-count resolver and the checks made before anything runs
# ---------------------------------------------------------------------------------------------


def class_count(classes: Any, random_classes: Any, total: Any) -> int:
    """``num_classes`` of a data config: the size of the ``classes`` subset, else
    ``random_classes``, else ``total``."""
    if classes is not None:
        return len(classes)
    return int(total) if random_classes is None else int(random_classes)


def register_resolvers() -> None:
    """Register ``${cnnlab.class_count:${.classes},${.random_classes},<total>}`` with
    OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("cnnlab.class_count"):
        OmegaConf.register_new_resolver("cnnlab.class_count", class_count)


def check_config(data: DataConfig) -> None:
    """Raise a one-line UsageError for data options that cannot work, before anything runs:
    the schema's ranges and rule (:func:`cnnlab.schema.check_bounds`; composed configs have
    had them checked already), then the folder on disk."""
    from cnnlab.schema import check_bounds

    source(data.name)
    check_bounds(data, "data.")
    if data.name != "shapes":
        _check_root(data)


def _check_root(data: DataConfig) -> None:
    """``data.root`` must be a folder, or a path where downloads can make one.

    Otherwise every file would look missing (``cnnlab data info`` would advise a download) and
    a download would fail on the folder it cannot make, so this is said first, in one line.
    """
    blocker = _non_folder(Path(data.root).expanduser())
    if blocker is not None:
        what = "a file, not a folder" if os.path.isfile(blocker) else "not a folder"
        where = str(blocker.absolute())  # the full path, unless data.root already says it
        subject = f"data.root={data.root}" + ("" if where == data.root else f": {where}")
        raise UsageError(f"{subject} is {what}; give the folder of the {data.name} files")


def _non_folder(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists, if it is not a folder: then no
    folder ``path`` can be read or made. None when ``path`` is a folder or can become one.

    ``os.path.lexists`` counts a broken symlink as existing (it blocks a folder there too);
    the ``os.path`` tests take a path that cannot be inspected as absent, so this never raises.
    """
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return None if os.path.isdir(candidate) else candidate
    return None


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load(data: DataConfig, seed: int, dtype: np.dtype | type = np.float32) -> Dataset:
    """The data set that the ``data`` config node describes, split and normalised, its images
    in ``dtype``.

    Reads (or generates) the official train and test splits, downloading missing files when
    ``data.download`` allows; raises RunError (one line) for files missing or corrupt.
    """
    dataset = _load(data, seed)
    return dataset if np.dtype(dtype) == np.float32 else dataset.astype(dtype)


def _load(data: DataConfig, seed: int) -> Dataset:
    check_config(data)
    raw = source(data.name).read(data, seed)
    names, (x_train, y_train), (x_test, y_test) = _subset(raw, chosen_classes(data, seed))

    order = np.random.default_rng([seed, DATA_STREAM, VAL_SPLIT_ID]).permutation(len(y_train))
    n_val = round(data.val_fraction * len(y_train))
    val_idx, train_idx = order[:n_val], order[n_val:]
    test_idx = np.arange(len(y_test))
    if data.limit is not None:
        train_idx, val_idx, test_idx = (i[: data.limit] for i in (train_idx, val_idx, test_idx))
    # Sorted indices keep the stored order within each split (and gather memory in order).
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)

    train = _unit_range(x_train[train_idx])
    mean, std = _channel_stats(train)
    return Dataset(
        name=data.name,
        classes=names,
        train=Split(_normalise(train, mean, std), y_train[train_idx]),
        val=Split(normalised(x_train[val_idx], mean, std), y_train[val_idx]),
        test=Split(normalised(x_test[test_idx], mean, std), y_test[test_idx]),
        mean=mean,
        std=std,
    )


def chosen_classes(data: DataConfig, seed: int) -> list[int] | None:
    """The class indices a run keeps: ``data.classes`` as given, or ``data.random_classes`` of
    them drawn from ``seed`` (sorted, so labels follow the data set's own order), or None
    for all. The same seed draws the same classes wherever the data is loaded again (eval,
    resume)."""
    if data.classes is not None:
        return [int(c) for c in data.classes]
    # .get: configs saved before data.random_classes existed lack the key.
    k = data.get("random_classes")
    if k is None:
        return None
    rng = np.random.default_rng([seed, DATA_STREAM, CLASS_DRAW_ID])
    return sorted(int(c) for c in rng.choice(SOURCES[data.name][1], int(k), replace=False))


def _subset(
    raw: Raw, classes: list[int] | None
) -> tuple[list[str], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Keep only ``classes`` (indices, in the order given) and relabel them 0..k-1."""
    if classes is None:
        return list(raw.classes), (raw.x_train, raw.y_train), (raw.x_test, raw.y_test)
    keep = classes
    relabel = np.full(len(raw.classes), -1, dtype=np.int64)
    relabel[keep] = np.arange(len(keep))

    def pick(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(relabel[y] >= 0)
        return x[rows], relabel[y[rows]]

    return (
        [raw.classes[c] for c in keep],
        pick(raw.x_train, raw.y_train),
        pick(raw.x_test, raw.y_test),
    )


def _unit_range(x: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 divided by 255, floats as they are. (N, C, H, W)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    return x.astype(np.float32, copy=False)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (C,) float32 of ``x`` (N, C, H, W), summed in float64.

    A constant channel (std 0) gets std 1 so that normalising it cannot divide by zero.
    """
    if len(x) == 0:
        raise UsageError("the train split is empty: lower data.val_fraction or raise data.limit")
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalised(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Stored images as a :class:`Dataset` with statistics ``mean``, ``std`` (C,) holds them:
    pixels scaled to [0, 1] (uint8 divided by 255), then ``(x - mean) / std`` per channel.

    x: (N, C, H, W) uint8, or floats in [0, 1] (not changed) -> (N, C, H, W) float32. This is
    what :func:`load` does to every split, and ``cnnlab predict`` to every image it reads.
    """
    scaled = _unit_range(x)
    return _normalise(scaled.copy() if scaled is x else scaled, mean, std)


def unnormalised(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised images (N, C, H, W) as they were loaded, for pictures: ``x·std + mean`` per
    channel, clipped to [0, 1] (augmentation's zero fill shows as the mean colour)."""
    return np.clip(x * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None], 0, 1)


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per channel, in place on a float32 (N, C, H, W) array we own."""
    x -= mean[:, None, None]
    x /= std[:, None, None]
    return x
