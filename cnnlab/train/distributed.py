"""Data-parallel training: starting the processes, and what the processes share.

``backend=torch|cuda trainer.devices=N`` trains N copies of the model, one per process (a
*rank*), with PyTorch's DistributedDataParallel: gloo on the CPU, NCCL on GPUs (rank r on GPU r).
Every rank runs the same training loop on its contiguous share of each global batch of
``N * trainer.batch_size`` rows (:func:`cnnlab.data.batches.shard`); DDP averages the gradients,
batch norm takes its statistics over the global batch, and the random draws of a batch are made
for all its rows and cut to the rank's, so the run ends where one process with a batch of
``N * trainer.batch_size`` would (up to float rounding).

Two ways in:

* cnnlab starts the ranks itself and watches them (:func:`cnnlab.train.spawn.spawn`);
* or ``torchrun`` does (RANK, WORLD_SIZE and LOCAL_RANK set) and watches them.

Either way each rank joins the process group the same way (:func:`joined`).

With one device nothing here imports torch: :data:`SINGLE` is a group of one whose collectives
do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import numpy as np

from cnnlab.data.batches import Rows, shard
from cnnlab.errors import BackendUnavailableError, UsageError

# A guard for a rank that is alive but stuck: collectives fail after this long. Dead ranks are
# noticed at once (by the parent, or torchrun); the guard is long because rank 0 reads (and may
# download) the data while the others wait for it.
TIMEOUT = timedelta(minutes=30)
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel run, and the collectives the loop needs.

    Attributes:
        rank: 0..world-1; rank 0 writes every output.
        world: number of processes.
        local_rank: the rank among the processes on this machine (its GPU index).
        local_world: processes on this machine (they share its CPU cores).
        device: ``cpu`` or ``cuda``: where the collectives' tensors live.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """Whether this process writes the outputs (logs, TensorBoard, checkpoints)."""
        return self.rank == 0

    def shard(self, total: int) -> Rows:
        """This rank's contiguous rows of a batch of ``total`` rows."""
        return shard(total, self.rank, self.world)

    def place(self, device: str) -> str:
        """Where this rank keeps tensors of a backend on ``device`` (``cpu`` or ``cuda``): the
        same, but each rank of a multi-GPU run on its own GPU, ``cuda:<local rank>``."""
        if device == "cuda" and self.world > 1:
            return f"cuda:{self.local_rank}"
        return device

    def threads(self, requested: int | None) -> int | None:
        """Threads for numpy and torch in this rank: trainer.threads if set, else the CPU
        cores split evenly between the ranks on this machine (at least one each).

        torch's default is one thread per core in every process, so N ranks would run N times
        as many threads as there are cores; oversubscribed cores slow every rank (and the
        collectives that wait for the slowest). One process keeps the libraries' default.
        """
        if requested is not None or self.world == 1:
            return requested
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return max(1, (cores or os.cpu_count() or 1) // self.local_world)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """The element-wise sum over the ranks of float ``values`` (any shape), as float64."""
        values = np.asarray(values, dtype=np.float64)
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.as_tensor(values, device=self.place(self.device)).clone()
        dist.all_reduce(t)
        return t.cpu().numpy()

    def barrier(self) -> None:
        """Wait until every rank is here (nothing to wait for with one process)."""
        if self.world > 1:
            self.sum(np.zeros(1))  # a sum is a barrier that works on gloo and NCCL alike

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def batch_sum(self) -> Callable[[Any], Any] | None:
        """Batch norm's sum over the ranks, differentiable (None with one process)."""
        return None if self.world == 1 else _differentiable_sum().apply

    def wrap(self, module: Any) -> Any:
        """The module to train with: wrapped in DistributedDataParallel when there are ranks
        to average gradients with, else the module itself."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if self.device == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)


SINGLE = Group()


@cache
def _differentiable_sum() -> Any:
    """An autograd function: the sum over the ranks of a tensor, on every rank.

    Backward: every rank's loss depends on the sum, so the gradient of the total loss with
    respect to this rank's input is the sum over the ranks of the gradients of the sum.
    Defined on first use, as it needs torch.
    """
    import torch
    import torch.distributed as dist

    class SumOverRanks(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            dist.all_reduce(t)
            return t

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            grad = grad.clone()
            dist.all_reduce(grad)
            return grad

    return SumOverRanks


# ---------------------------------------------------------------------------------------------
# Checks made before anything runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchedBy:
    """The ranks a launcher such as torchrun started (from its environment variables)."""

    rank: int
    world: int
    local_rank: int
    local_world: int


def launched() -> LaunchedBy | None:
    """The torchrun-style environment (RANK, WORLD_SIZE, LOCAL_RANK), or None outside one."""
    if not all(k in os.environ for k in ENV):
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in ENV)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise UsageError(
            f"{', '.join(ENV)} must be integers, got "
            + ", ".join(f"{k}={os.environ[k]!r}" for k in ENV)
        ) from None
    return LaunchedBy(rank, world, local, local_world)


def check(devices: int, backend: Any) -> None:
    """One-line UsageErrors for a ``trainer.devices`` that cannot run here."""
    env = launched()
    if env is not None and devices != env.world:
        raise UsageError(
            f"trainer.devices={devices} but torchrun started {env.world} processes: "
            f"give trainer.devices={env.world}"
        )
    if devices == 1:
        return
    if backend.framework != "torch":
        raise UsageError(
            f"trainer.devices={devices}: training on several devices needs backend=torch or "
            f"backend=cuda (PyTorch DDP), not backend={backend.name}"
        )
    if backend.device == "cuda":
        import torch

        here = env.local_world if env is not None else devices
        count = torch.cuda.device_count()
        if here > count:
            raise BackendUnavailableError(
                f"trainer.devices={devices} needs {here} GPUs on this machine, {count} visible"
            )


# ---------------------------------------------------------------------------------------------
# Joining the group (every rank, whoever started it)
# ---------------------------------------------------------------------------------------------


@contextmanager
def joined(device: str) -> Iterator[Group]:
    """This process's group: from torchrun's variables (joining the process group, left when
    the block ends without an error), or :data:`SINGLE` when no launcher started it.

    device: ``cpu`` (gloo) or ``cuda`` (NCCL, one GPU per local rank).
    """
    env = launched()
    if env is None or env.world == 1:
        yield SINGLE
        return
    import torch
    import torch.distributed as dist

    group = Group(env.rank, env.world, env.local_rank, env.local_world, device)
    if device == "cuda":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=TIMEOUT)
    yield group
    # Only after success: leaving the group would end the others' waits with errors of their
    # own before this rank has reported why it failed (the process is ending anyway).
    dist.destroy_process_group()
