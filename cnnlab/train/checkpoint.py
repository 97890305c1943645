"""Checkpoints: numpy ``.npz`` files written atomically and read without executing code.

A checkpoint holds the engine state (``param/``, ``buffer/``, ``optim/`` arrays) and a JSON
metadata record (loop position, running sums, the composed config, ...) stored as a uint8
array, so ``np.load(..., allow_pickle=False)`` reads everything: no pickle, no code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import RunError, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

META = "__meta__"
FORMAT = 1


def save(path: Path, state: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a temporary file in the same folder, then a rename.

    A crash (or SIGKILL) mid-write leaves the previous checkpoint intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"format": FORMAT, **meta}).encode()
    arrays = {**state, META: np.frombuffer(record, dtype=np.uint8)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``(state, meta)``; a missing or unreadable file is one RunError line."""
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(arrays.pop(META).tobytes())
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"{path} is not a readable cnnlab checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise RunError(f"{path}: checkpoint format {meta.get('format')} is not {FORMAT}")
    return arrays, meta


def find(target: str | Path) -> Path:
    """A checkpoint file from a path that is one, or a run directory (its ``last.npz``)."""
    path = Path(target).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.npz"
    if not path.is_file():
        raise RunError(f"no checkpoint at {path} (give a run directory or a .npz checkpoint)")
    return path.resolve()


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read once: its file, the engine state and the metadata record."""

    path: Path
    state: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def config(self) -> DictConfig:
        """The composed config of the run that wrote it."""
        from omegaconf import OmegaConf

        return OmegaConf.create(self.meta["config"])

    @property
    def step(self) -> int:
        return int(self.meta["loop"]["step"])


def read(target: str | Path, key: str) -> Checkpoint:
    """The checkpoint ``target`` names (a file, or a run directory's last one), read once.

    key: the option that gave ``target`` (``trainer.resume``, ``checkpoint``). Nothing there is
    a one-line UsageError naming it; a file that cannot be read stays a RunError.
    """
    try:
        path = find(target)
    except RunError as exc:
        raise UsageError(f"{key}: {exc}") from None
    state, meta = load(path)
    return Checkpoint(path, state, meta)
