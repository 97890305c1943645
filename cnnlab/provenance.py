"""Where a result came from: versions, source commit, BLAS, threads and hardware.

:func:`provenance` returns a flat, JSON-serialisable dict that ``results.json`` and ``bench.json``
embed, so that a number can be traced to the code and the machine that produced it.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import cnnlab

__all__ = ["provenance"]


def provenance(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Versions, source commit, BLAS, thread counts and hardware of this run.

    Args:
        threads: The thread count the run asked for (``trainer.threads``), recorded as given.
        device: The run's device (``"cpu"``, ``"cuda"``, ``"cuda:1"``): the GPU's name is
            recorded only for a cuda device that torch can see.

    Returns:
        A dict with these keys (``None`` where a value cannot be found):

        - ``cnnlab_version``
        - ``git_commit``: 40-hex ``HEAD`` of the source checkout cnnlab is imported from, and
          ``git_dirty``: whether that checkout has changes (tracked or untracked, not ignored);
          both ``None`` for an installed package or without git
        - ``python_version``, ``platform``, ``hostname``
        - ``numpy_version``, ``blas``: one dict per thread pool that threadpoolctl sees
          (``user_api``, ``internal_api``, ``prefix``, ``version``, ``num_threads``), torch's
          among them where the run loaded torch
        - ``torch_version`` (the installed one), ``torch_threads`` (where the run loaded torch)
        - ``threads``: the requested count, ``device``
        - ``cpu_model``, ``cpu_count`` (logical CPUs), ``gpu_name``
        - ``timestamp_utc``: ISO 8601, seconds, with ``+00:00``
    """
    import numpy as np

    torch_version, torch_threads, gpu_name = _torch_facts(device)
    git_commit, git_dirty = _git_state(Path(cnnlab.__file__).resolve().parent.parent)
    return {
        "cnnlab_version": cnnlab.__version__,
        "git_commit": git_commit,
        "git_dirty": git_dirty,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "numpy_version": np.__version__,
        "blas": _thread_pools(),
        "torch_version": torch_version,
        "torch_threads": torch_threads,
        "threads": threads,
        "device": device,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu_name": gpu_name,
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _git_state(source_root: Path) -> tuple[str | None, bool | None]:
    """``(HEAD, dirty)`` when ``source_root`` is the top of a git checkout, else ``(None, None)``.

    The top-level check keeps an installed cnnlab (``site-packages`` inside some other
    repository's virtual environment) from reporting that repository's commit.
    """

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(source_root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            # Do not take the index lock: another git command may be running in the checkout.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
        return result.stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != source_root:
            return None, None
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def _thread_pools() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "prefix", "version", "num_threads")
    return [{key: pool.get(key) for key in keys} for pool in threadpool_info()]


def _torch_facts(device: str) -> tuple[str | None, int | None, str | None]:
    """``(torch version, torch threads, GPU name)``.

    A run that did not load torch (a numpy backend) gets the installed version from the
    package's metadata, without the second or two that importing torch takes, and no thread
    count or GPU (None): it used neither. None throughout where torch is not installed, or
    its import is blocked (``sys.modules["torch"] = None``).
    """
    if "torch" not in sys.modules:
        try:
            return version("torch"), None, None
        except PackageNotFoundError:
            return None, None, None
    torch = sys.modules["torch"]
    if torch is None:
        return None, None, None
    gpu_name = None
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu_name = torch.cuda.get_device_name(torch.device(device))
    return str(torch.__version__), torch.get_num_threads(), gpu_name


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None
