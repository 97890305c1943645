"""provenance(): the facts a result records about its code and machine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

import cnnlab
from cnnlab.provenance import provenance

REPO = Path(cnnlab.__file__).resolve().parent.parent

KEYS = {
    "cnnlab_version",
    "git_commit",
    "git_dirty",
    "python_version",
    "platform",
    "hostname",
    "numpy_version",
    "blas",
    "torch_version",
    "torch_threads",
    "threads",
    "device",
    "cpu_model",
    "cpu_count",
    "gpu_name",
    "timestamp_utc",
}


def is_git_checkout():
    try:
        top = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return Path(top).resolve() == REPO


def test_keys_and_types():
    import torch  # noqa: F401 - as a run on a torch backend has loaded it

    info = provenance(threads=2)
    assert set(info) == KEYS
    assert info["cnnlab_version"] == cnnlab.__version__
    assert info["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert info["threads"] == 2 and info["device"] == "cpu"
    assert isinstance(info["cpu_count"], int) and info["cpu_count"] >= 1
    assert info["cpu_model"] is None or isinstance(info["cpu_model"], str)
    assert info["gpu_name"] is None  # only recorded for a cuda device
    assert isinstance(info["torch_version"], str) and info["torch_threads"] >= 1
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["numpy_version"])
    assert isinstance(info["blas"], list)
    for pool in info["blas"]:
        assert set(pool) == {"user_api", "internal_api", "prefix", "version", "num_threads"}
        assert isinstance(pool["num_threads"], int)
    assert any(pool["user_api"] == "blas" for pool in info["blas"])  # numpy's BLAS is loaded
    stamp = datetime.fromisoformat(info["timestamp_utc"])
    assert stamp.utcoffset().total_seconds() == 0


def test_a_numpy_run_records_torch_s_version_without_importing_it():
    code = (
        "import sys\n"
        "from cnnlab.provenance import provenance\n"
        "info = provenance()\n"
        "print(info['torch_version'], info['torch_threads'], 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    from importlib.metadata import version

    assert result.stdout.split() == [version("torch"), "None", "False"]


def test_json_serialisable():
    info = provenance(threads=None)
    assert json.loads(json.dumps(info)) == info


@pytest.mark.skipif(not is_git_checkout(), reason="cnnlab is not imported from a git checkout")
def test_git_commit_of_this_checkout():
    info = provenance()
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", info["git_commit"])
    assert info["git_commit"] == head
    assert isinstance(info["git_dirty"], bool)


def test_no_git_gives_none(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    info = provenance()
    assert info["git_commit"] is None and info["git_dirty"] is None


def test_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    info = provenance(device="cuda")
    assert info["torch_version"] is None
    assert info["torch_threads"] is None
    assert info["gpu_name"] is None
