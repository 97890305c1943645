"""Starting the ranks of a data-parallel run ourselves, and watching them.

:func:`spawn` starts N fresh processes (the ``spawn`` start method: nothing of this process's
state, Hydra's included, is inherited), with MASTER_ADDR 127.0.0.1 and a free port unless
MASTER_ADDR/MASTER_PORT are set. Each rank sets torch's launcher variables and joins the group
as a torchrun process would (:func:`cnnlab.train.distributed.joined`). The parent only watches:
a rank that raises, exits or is killed ends the run (the others are killed) with one line that
names the first failure; SIGINT/SIGTERM to the parent reach every rank once, and the ranks stop
together at the same step with a checkpoint.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import CnnlabError, RunError
from cnnlab.train.distributed import Group, joined

# After one rank fails, how long the others get to end on their own before they are killed.
GRACE_S = 5.0
# The end of a crashed rank's traceback that it sends to the parent (which reads the reports
# once every rank has ended: they must fit in the pipe's buffer, 64 KiB on Linux).
_TRACE_CHARS = 8000


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class _Report:
    """What a rank sends the parent as it ends: ``kind`` is done (``value`` is what the rank
    function returned), error (a CnnlabError), interrupted or crash (``value`` is the
    exception's last line and its traceback); ``at`` is when, to tell a first failure from
    the ones it caused."""

    rank: int
    kind: str
    value: Any
    at: float


def spawn(
    fn: Callable[[Any, Group], Any],
    world: int,
    payload: Any,
    device: str = "cpu",
    logging_config: dict | None = None,
) -> Any:
    """Run ``fn(payload, group)`` in ``world`` new processes; return rank 0's result.

    fn must be importable by name (a module-level function) and payload picklable: spawned
    processes start from scratch, with none of this process's state (Hydra's included).
    logging_config: a ``logging.config.dictConfig`` dict for rank 0 (the parent's, so that rank
    0 logs where the parent would); the other ranks log warnings and errors only.

    A CnnlabError in any rank is raised here as it was raised there (rank 0's first); a rank
    that crashes, exits or is killed ends the run: the others get :data:`GRACE_S` seconds to
    end, are killed, and a RunError names the first failure. SIGINT/SIGTERM received here are
    passed on to every rank (which stop together and checkpoint); a KeyboardInterrupt in a rank
    (a second signal) is raised here.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ.get("MASTER_PORT") or free_port())
    procs = [
        ctx.Process(
            target=_rank_main,
            args=(rank, world, addr, port, fn, payload, queue, device, logging_config),
            name=f"cnnlab-rank-{rank}",
        )
        for rank in range(world)
    ]
    with _passed_on(procs):
        with _standard_start_method():
            for p in procs:
                p.start()
        ended = _supervise(procs)
    reports: dict[int, _Report] = {}
    while not queue.empty():
        report = queue.get()
        reports[report.rank] = report
    return _outcome(procs, ended, reports)


@contextmanager
def _standard_start_method() -> Iterator[None]:
    """Make the process-wide start method a standard one while ranks start.

    A spawned child sets itself up with its parent's process-wide start method. In a worker of
    joblib's loky backend (``hydra/launcher=joblib``) that is ``loky``, which a fresh process
    does not know: it would fail before running any of our code.
    """
    import multiprocessing

    current = multiprocessing.get_start_method(allow_none=True)
    if current is None or current in multiprocessing.get_all_start_methods():
        yield
        return
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(current, force=True)


@contextmanager
def _passed_on(procs: list[Any]) -> Iterator[None]:
    """Pass SIGINT/SIGTERM on to the ranks, which stop together (see :func:`_rank_main`)."""

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                with suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(p.pid, signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, forward) for s in handled}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _supervise(procs: list[Any]) -> list[int]:
    """Wait for every rank; once one fails, give the others GRACE_S seconds, then kill them.

    Returns the ranks that ended by themselves, in the order they ended.
    """
    from multiprocessing.connection import wait

    live = {p.sentinel: rank for rank, p in enumerate(procs)}
    ended: list[int] = []
    deadline: float | None = None
    while live:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = wait(list(live), timeout)
        if not ready:
            break
        for sentinel in ready:
            rank = live.pop(sentinel)
            procs[rank].join()
            ended.append(rank)
            if procs[rank].exitcode != 0 and deadline is None:
                deadline = time.monotonic() + GRACE_S
    for rank in live.values():
        procs[rank].kill()
        procs[rank].join()
    return ended


def _outcome(procs: list[Any], ended: list[int], reports: dict[int, _Report]) -> Any:
    """Rank 0's result, or the one error that explains how the run ended."""
    errors = [r for r in sorted(reports.values(), key=lambda r: r.rank) if r.kind == "error"]
    if errors:
        raise errors[0].value
    failed = [r for r in ended if procs[r].exitcode != 0]
    if not failed:
        if 0 not in reports or reports[0].kind != "done":
            raise RunError("rank 0 ended without a result")
        return reports[0].value
    if any(r.kind == "interrupted" for r in reports.values()):
        raise KeyboardInterrupt
    others = "; the other ranks were stopped" if len(procs) > 1 else ""
    # A rank killed by a signal sent no report and caused the failures of the others (their
    # collectives lost a peer); otherwise the earliest crash is the cause.
    signalled = [r for r in failed if procs[r].exitcode < 0 and r not in reports]
    if signalled:
        rank = signalled[0]
        name = signal.Signals(-procs[rank].exitcode).name
        raise RunError(f"rank {rank} was killed by {name}{others}")
    crashes = sorted((r for r in reports.values() if r.kind == "crash"), key=lambda r: r.at)
    if crashes:
        line, trace = crashes[0].value
        print(f"rank {crashes[0].rank}: {trace}", file=sys.stderr, end="")
        raise RunError(f"rank {crashes[0].rank} failed: {line}{others}")
    rank = failed[0]
    raise RunError(f"rank {rank} exited with code {procs[rank].exitcode}{others}")


def _stop_when_parent_dies() -> None:
    """Send this rank one SIGTERM when the parent dies: it then stops at the next step with a
    checkpoint, like on any SIGTERM.

    A thread waits on the parent's sentinel rather than asking Linux (``PR_SET_PDEATHSIG``),
    which signals once per thread of the parent that ends: a second signal would stop the rank
    at once, without its checkpoint.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns once the parent has ended
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="cnnlab-parent-watch", daemon=True).start()


def _configure_logging(rank: int, config: dict | None) -> None:
    if rank == 0 and config is not None:
        logging.config.dictConfig(config)
        return
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format=f"[rank {rank}] %(levelname)s %(message)s")


def _rank_main(
    rank: int,
    world: int,
    addr: str,
    port: int,
    fn: Callable[[Any, Group], Any],
    payload: Any,
    queue: Any,
    device: str,
    logging_config: dict | None,
) -> None:
    """A spawned rank: join the group the way torchrun's processes do, run fn, report."""
    # Its own process group: a Ctrl-C in the terminal reaches only the parent, which passes it
    # on once to each rank (two signals would make a rank stop at once, without a checkpoint).
    if hasattr(os, "setpgrp"):  # POSIX
        os.setpgrp()
    _stop_when_parent_dies()
    os.environ.update(
        MASTER_ADDR=addr,
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    _configure_logging(rank, logging_config)
    code = 0
    try:
        with joined(device) as group:
            report = _Report(rank, "done", fn(payload, group), time.time())
    except CnnlabError as exc:
        report, code = _Report(rank, "error", exc, time.time()), exc.exit_code
    except KeyboardInterrupt:
        report, code = _Report(rank, "interrupted", None, time.time()), 130
    except BaseException as exc:  # a bug, or a collective that lost a peer
        # The parent shows the traceback of the first crash only: the others are mostly
        # collectives that lost that rank, noise next to the cause.
        at = time.time()
        line = "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1]
        trace = traceback.format_exc()[-_TRACE_CHARS:]
        report, code = _Report(rank, "crash", (line[:500], trace), at), 1
        parent = multiprocessing.parent_process()
        if parent is not None and not parent.is_alive():  # no one left to show it
            traceback.print_exc()
    queue.put(report)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: nothing is left to do, and it can hang on NCCL
