"""The worker process that runs a user's layer code, so that it cannot take cnnlab down.

The user's file is imported in one process, started once and reused for every call (starting
one costs a fraction of a second, which would otherwise dominate both timings and training).
cnnlab sends it calls over a pipe: a function's dotted name (``conv_forward_naive``,
``Conv.forward``) and its arguments, numpy arrays and the convention's parameter dicts.
A forward's cache stays in the worker, under a number, until cnnlab drops its handle on it; the
backward names that number. Each
answer carries the seconds the user's function ran, measured in the worker: ``cnnlab bench``
times a user's layer by these, without the pipe's copies.

Each call has a time limit. A call that raises comes back as the exception's type and message; a
call that runs past the limit, or that kills the process (``os._exit``, a segfault, running
out of memory), stops the worker, and the next call starts a fresh one. Either way the caller
gets a :class:`~cnnlab.errors.UserCodeError` naming the function and what happened.

For a convention on torch tensors (EECS 498) the worker converts arrays to tensors on the way in
and back on the way out, so the parent only ever sees numpy arrays.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import sys
import time
import traceback
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.backends import UserSource
from cnnlab.errors import UsageError, UserCodeError

# Seconds a fresh worker may take to import the user's file (torch's import alone can take
# several on a cold disk).
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Handle:
    """A forward's cache, kept in the worker that made it (``worker``: its start count)."""

    worker: int
    number: int


# -- the worker's side --------------------------------------------------------------------------


def _load(source: UserSource) -> Any:
    if source.module:
        return importlib.import_module(source.module)
    path = Path(str(source.file)).resolve()
    # Its folder first on the path, as `python layers.py` would have it: its own helpers import.
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _names(module: Any) -> list[str]:
    """The module's functions, and ``Class.method`` for its classes' forward and backward."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, type):
            methods = ("forward", "backward", "backward_alt")
            found += [f"{name}.{m}" for m in methods if hasattr(value, m)]
        elif callable(value):
            found.append(name)
    return found


def _resolve(module: Any, path: str) -> Any:
    value = module
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _to_user(value: Any, tensors: bool) -> Any:
    if not tensors:
        return value
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _to_user(v, tensors) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_to_user(v, tensors) for v in value)
    return value


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_to_numpy(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _describe(exc: BaseException) -> str:
    """``TypeError: ... (layers.py, line 12)``: the exception and the user's line it came from."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" ({Path(last.filename).name}, line {last.lineno})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}{': ' + text[0] if text else ''}{where}"


def serve(conn: Connection, source: UserSource) -> None:
    """The worker's loop: load the user's code, then answer calls until told to stop."""
    try:
        module = _load(source)
    except BaseException as exc:  # a broken file is reported, whatever it raised
        conn.send(("error", _describe(exc), 0.0))
        return
    conn.send(("ok", _names(module), 0.0))
    caches: dict[int, Any] = {}
    count = 0
    while True:
        try:
            request, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if request == "stop":
            return
        try:
            for number in payload.pop("free", ()):
                caches.pop(number, None)
            tensors = payload.pop("tensors")
            fn = _resolve(module, payload["fn"])
            if request == "backward":
                # Kept until cnnlab drops its handle: a bench runs one backward many times.
                cache = caches[payload["cache"]]
                dout = _to_user(payload["dout"], tensors)
                start = time.perf_counter()
                result: Any = fn(dout, cache)
                seconds = time.perf_counter() - start
            else:
                args = _to_user(payload["args"], tensors)
                start = time.perf_counter()
                result = fn(*args)
                seconds = time.perf_counter() - start
                if request == "forward":
                    out, cache = result
                    count += 1
                    caches[count] = cache
                    result = (out, count)
                # Parameter dicts the function may have updated (batch norm's running
                # statistics), for the caller to read back.
                result = (result, [a for a in args if isinstance(a, dict)])
            conn.send(("ok", _to_numpy(result), seconds))
        except BaseException as exc:  # the user's exception, reported and survived
            conn.send(("error", _describe(exc), 0.0))


# -- cnnlab's side -----------------------------------------------------------------------------


def _kill(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)


class Worker:
    """The worker process of one kernel set: started on first use, restarted after a failure.

    Args:
        source: the user's file or module.

    Attributes:
        tensors: the code works on torch tensors (EECS 498): arrays are converted both ways.
    """

    def __init__(self, source: UserSource) -> None:
        self.source = source
        self.tensors = False
        self.starts = 0
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._names: list[str] = []
        self._freed: list[int] = []
        self.busy = 0.0

    def names(self) -> list[str]:
        """The functions and ``Class.forward``/``Class.backward`` methods the code defines."""
        self._ensure()
        return self._names

    def forward(self, fn: str, args: list[Any]) -> tuple[Any, Handle, list[dict]]:
        """``fn(*args)`` that returns ``(out, cache)``: out, a handle on the cache (kept in
        the worker until the handle is dropped) and the dict arguments as the call left them."""
        (out, number), dicts = self._call("forward", fn, {"args": args})
        handle = Handle(self.starts, number)
        weakref.finalize(handle, self._free, self.starts, number)
        return out, handle, dicts

    def _free(self, worker: int, number: int) -> None:
        # Sent with the next call; a cache of a worker since restarted is gone already.
        if worker == self.starts:
            self._freed.append(number)

    def backward(self, fn: str, dout: np.ndarray, handle: Handle) -> Any:
        """``fn(dout, cache)`` with the cache the handle names."""
        if handle.worker != self.starts:
            raise UserCodeError(f"{fn}: its forward's cache was lost when the worker was restarted")
        return self._call("backward", fn, {"dout": dout, "cache": handle.number})

    def call(self, fn: str, args: list[Any]) -> tuple[Any, list[dict]]:
        """``fn(*args)``: its result and the dict arguments as the call left them."""
        return self._call("call", fn, {"args": args})

    def take_busy(self) -> float:
        """Seconds the user's functions ran, measured in the worker, since the last take:
        timings without the pipe's copies or cnnlab's argument translation."""
        busy, self.busy = self.busy, 0.0
        return busy

    def close(self) -> None:
        """Stop the worker (it is started again by the next call)."""
        if self._conn is not None:
            with contextlib.suppress(OSError, ValueError):  # a worker that is gone already
                self._conn.send(("stop", {}))
        self._stop()

    def _ensure(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._stop()
        # spawn: a fresh interpreter, with none of cnnlab's threads or open files forked into it.
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=serve, args=(child, self.source), daemon=True, name="cnnlab-user"
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Stopped with this object at the latest, whoever forgets to close it.
        weakref.finalize(self, _kill, process)
        self.starts += 1
        self._freed = []
        if not parent.poll(START_TIMEOUT_S):
            self._stop()
            raise UsageError(
                f"{self.source.describe()}: importing it took over {START_TIMEOUT_S} s"
            )
        try:
            status, value, _ = parent.recv()
        except EOFError:
            self._stop()
            raise UsageError(f"{self.source.describe()}: its import ended the process") from None
        if status == "error":
            self._stop()
            raise UsageError(f"{self.source.describe()} could not be imported: {value}")
        self._names = value
        return parent

    def _call(self, request: str, fn: str, payload: dict[str, Any]) -> Any:
        conn = self._ensure()
        payload |= {"fn": fn, "free": self._freed, "tensors": self.tensors}
        self._freed = []
        limit = self.source.timeout_s
        try:
            conn.send((request, payload))
            if not conn.poll(limit):
                self._stop()
                raise UserCodeError(f"{fn}: no result within {limit:g} s (user.timeout_s); stopped")
            status, value, seconds = conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            code = self._stop()
            raise UserCodeError(f"{fn}: its worker process died (exit code {code})") from None
        if status == "error":
            raise UserCodeError(f"{fn} raised {value}")
        self.busy += seconds
        return value

    def _stop(self) -> int | None:
        """Kill the process (if any) and return its exit code."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return None
        _kill(process)
        return process.exitcode
