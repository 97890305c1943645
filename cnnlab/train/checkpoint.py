"""Checkpoints: numpy ``.npz`` files written atomically and read without executing code.

A checkpoint holds the engine state (``param/``, ``buffer/``, ``optim/`` arrays) and a JSON
metadata record (loop position, running sums, the composed config, ...) stored as a uint8
array, so ``np.load(..., allow_pickle=False)`` reads everything: no pickle, no code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import RunError, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cnnlab.data import Inputs
    from cnnlab.ops.structure import Sequential
    from cnnlab.ops.tree import Node, Shape
    from cnnlab.schema import TrainConfig

META = "__meta__"
FORMAT = 1


def save(path: Path, state: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a temporary file in the same folder, then a rename.

    A crash (or SIGKILL) mid-write, or a write that fails (disk full), leaves the previous
    checkpoint intact. The file gets the permissions of any other output (the umask's), not
    the owner-only ones of a temporary file.
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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a file-size limit: name the checkpoint, not the tmp
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``(state, meta)``; a missing, incomplete or foreign file is one RunError line."""
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError:  # not an .npz, or arrays that would need pickle: not ours either way
        raise RunError(f"{path} is not a cnnlab checkpoint (not a numpy .npz file)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(f"{path} is incomplete or damaged ({_reason(exc)})") from None
    if META not in arrays:
        raise RunError(f"{path} is not a cnnlab checkpoint (no {META} record)")
    try:
        meta = json.loads(arrays.pop(META).tobytes())
    except (ValueError, UnicodeDecodeError):
        raise RunError(f"{path}: its {META} record is not readable JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise RunError(f"{path}: checkpoint format {found} is not {FORMAT}")
    for key in ("loop", "config"):
        if key not in meta:
            raise RunError(f"{path}: its {META} record has no {key!r}")
    return arrays, meta


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, for a one-line error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def find(target: str | Path) -> Path:
    """A checkpoint file from a path that is one, or a run directory (its ``last.npz``)."""
    path = Path(target).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.npz"
    if not path.is_file():
        raise RunError(f"no checkpoint at {path} (give a run directory or a .npz checkpoint)")
    return path.resolve()


# The trainer keys added since runs were first saved, at the values every older run had.
ADDED_TRAINER_KEYS = {"channels_last": False, "compile": False, "rng": "numpy"}


def upgraded(config: DictConfig, path: Path) -> DictConfig:
    """A saved run's config in today's keys: ``trainer.dtype`` (float32 or float64) as the
    ``trainer.precision`` it means, and trainer keys added since at the values the run had.
    Every reader of a saved run's config (eval, resume) reads it through here."""
    from omegaconf import DictConfig

    from cnnlab.precision import from_dtype

    trainer = config.get("trainer")
    if not isinstance(trainer, DictConfig):
        return config  # model_of names what is missing
    if "dtype" in trainer:
        try:
            precision = from_dtype(trainer.pop("dtype")).value
        except UsageError as exc:
            raise RunError(f"{path}: its config's {exc}") from None
        trainer.setdefault("precision", precision)
    for key, value in ADDED_TRAINER_KEYS.items():
        trainer.setdefault(key, value)
    return config


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read once: its file, the engine state and the metadata record."""

    path: Path
    state: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def config(self) -> DictConfig:
        """The composed config of the run that wrote it (a new copy on each call)."""
        from omegaconf import DictConfig, OmegaConf

        try:
            config = OmegaConf.create(self.meta["config"])
        except Exception as exc:  # OmegaConf and YAML raise several types
            raise RunError(f"{self.path}: its config does not parse ({_reason(exc)})") from None
        if not isinstance(config, DictConfig):
            raise RunError(f"{self.path}: its config is not a mapping")
        return upgraded(config, self.path)

    @property
    def step(self) -> int:
        return int(self.meta["loop"]["step"])

    @property
    def inputs(self) -> Inputs | None:
        """The class names, input shape and normalisation of the run's data; None for
        checkpoints written before they were recorded (their data set has them)."""
        from cnnlab.data import Inputs

        record = self.meta.get("inputs")
        if record is None:
            return None
        try:
            return Inputs.from_record(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunError(f"{self.path}: its inputs record is malformed ({exc})") from None


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


def verify(
    checkpoint: Checkpoint, net: Node, in_shape: Shape, dtype: np.dtype, scaled: bool = False
) -> None:
    """Raise one RunError line unless ``checkpoint`` holds every parameter and buffer of
    ``net`` (for inputs of ``in_shape``) with its shape and ``dtype``, optimizer state only
    for those parameters, the loss scaler's state only where the run scales its loss
    (``scaled``: ``trainer.precision=16-mixed``), and nothing else."""
    from cnnlab.ops.tree import buffer_specs, param_specs

    expected = {f"param/{s.name}": s.shape for s in param_specs(net, in_shape)}
    expected |= {f"buffer/{b.name}": b.shape for b in buffer_specs(net, in_shape)}
    params = {key.removeprefix("param/") for key in expected if key.startswith("param/")}
    state = checkpoint.state
    problems = [f"{key} missing" for key in expected if key not in state]
    for key, shape in expected.items():
        value = state.get(key)
        if value is not None and (value.shape != tuple(shape) or value.dtype != dtype):
            problems.append(
                f"{key} is {value.dtype}{list(value.shape)}, expected {dtype}{list(shape)}"
            )
    for key in state:
        owner = key.removeprefix("optim/").rpartition("/")[0]
        if key not in expected and key != "optim/step" and owner not in params:
            if scaled and key.startswith("scaler/"):
                continue
            problems.append(f"{key} unexpected")
    if problems:
        shown = "; ".join(problems[:4]) + (
            f"; and {len(problems) - 4} more" if problems[4:] else ""
        )
        raise RunError(f"{checkpoint.path} does not fit its run's model: {shown}")


def model_of(checkpoint: Checkpoint, run: TrainConfig) -> Sequential:
    """The net that ``run`` (the checkpoint's config, possibly with a new data folder)
    describes, once the checkpoint is known to fit it: one RunError line naming the file when
    the config does not describe a model or the state does not fit it."""
    from omegaconf.errors import OmegaConfBaseException

    from cnnlab.errors import CnnlabError
    from cnnlab.models import build_net
    from cnnlab.precision import Precision

    try:
        in_shape = tuple(int(n) for n in run.data.shape)
        net = build_net(run.model, run.norm, in_shape, act=run.get("act"))
        precision = Precision(str(run.trainer.precision))
    except (OmegaConfBaseException, CnnlabError, KeyError, TypeError, ValueError) as exc:
        problem = f"its config does not describe a model ({_reason(exc)})"
        raise RunError(f"{checkpoint.path}: {problem}") from None
    verify(checkpoint, net, in_shape, precision.dtype, precision.scaled)
    return net
