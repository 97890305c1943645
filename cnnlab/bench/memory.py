"""``bench model``'s peak memory: what a training step needs above its model and batch.

CPU backends: each backend's steps run in a process of their own (``python -m
cnnlab.bench.memory``: a fresh interpreter, holding none of this one's arrays, other backends'
engines or allocator caches). It builds the model's engine and the batch, then reads its peak
resident set size before and after :data:`STEPS` training steps; the difference is the row's
``peak_mem_bytes``. CUDA: in this process, torch's peak of allocated memory over the steps
(``max_memory_allocated`` after ``reset_peak_memory_stats``) less what was allocated before.

Either way the figure counts what the steps keep (the optimizer's state, made by the first
step) and what they free again (activations, gradients, im2col's columns); on the CPU also
the libraries' buffers made on first use (OpenBLAS's, torch's), a few MiB whatever the batch.
"""

from __future__ import annotations

import logging
import pickle
import resource
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.backends import Backend, BackendOptions
    from cnnlab.bench.model import ModelBench
    from cnnlab.models import Instance
    from cnnlab.schema import BenchConfig

log = logging.getLogger("cnnlab.bench")

# The first step makes the optimizer's state, the second shows a step's own peak beside it.
STEPS = 2

# ru_maxrss is in KiB on Linux, in bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def peak_memory(mb: ModelBench, backend: Backend) -> int | None:
    """Bytes a training step of ``mb``'s model on ``backend`` needs at its peak, above the
    memory its model, engine and batch hold before it (the module's docstring says how);
    None, and an error logged, where the measuring process failed (killed for memory, say):
    the row keeps its times."""
    if backend.device == "cuda":
        return _cuda_peak(mb, backend)
    from omegaconf import OmegaConf

    # Plain values: the schemas' classes are made at run time (pickle cannot name them) and
    # the child has no Hydra resolvers.
    cfg = OmegaConf.create(OmegaConf.to_container(mb.cfg, resolve=True, enum_to_str=True))
    job = pickle.dumps((cfg, mb.model, mb.options, backend.name))
    child = subprocess.run(
        [sys.executable, "-m", __name__], input=job, capture_output=True, check=False
    )
    if child.returncode != 0:
        lines = child.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        log.error(
            "bench.memory: the process measuring %s failed (exit code %d): %s",
            backend.name,
            child.returncode,
            lines[-1],
        )
        return None
    return int(child.stdout.split()[-1])  # the child's last word: a library may print before


def _child_peak(
    cfg: BenchConfig, model: Instance, options: BackendOptions, backend_name: str
) -> int:
    """In the child process: the rise of its peak RSS over the steps."""
    from cnnlab.backends import get_backend
    from cnnlab.bench.model import ModelBench

    mb = ModelBench(cfg, model, options)
    engine = mb.engine(get_backend(backend_name))
    mb.batch_of(mb.batch)
    _reset_peak_rss()
    before = _peak_rss()
    for _ in range(STEPS):
        mb.step(engine, mb.batch)
    return _peak_rss() - before


def _peak_rss() -> int:
    """This process's peak resident set size in bytes: ``VmHWM`` where /proc has it (Linux),
    else ``ru_maxrss``. On Linux ru_maxrss never reads below the peak of the process that
    started this one (the kernel carries it across exec), so in a child of a large bench
    process it would hide the steps' peak altogether."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT


def _reset_peak_rss() -> None:
    """Bring the peak RSS down to the present one, where the kernel allows (Linux 4.0+): it is
    a high-water mark, and a transient before the steps (unpickling the model, the engine's
    copies of its weights) would otherwise hide the part of their peak below it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _cuda_peak(mb: ModelBench, backend: Backend) -> int:
    import torch

    engine = mb.engine(backend)
    mb.batch_of(mb.batch)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(STEPS):
        mb.step(engine, mb.batch)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


if __name__ == "__main__":
    print(_child_peak(*pickle.loads(sys.stdin.buffer.read())))
