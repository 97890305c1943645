"""Data-parallel training (``trainer.devices=2``, gloo on the CPU), end to end in subprocesses.

Two ranks with batch B end where one process with batch 2B does, with and without batch norm;
rank 0 alone writes the outputs; SIGINT checkpoints and a resumed run finishes; a killed or
failing rank ends the run with one line instead of a hang.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab.errors import RunError, UsageError
from tests.cli import run_cnnlab
from tests.train.test_train_cli import params, run_dir, untimed

# float64 so that two ranks and one process agree to rounding, not to float32's 1e-6.
TINY = ["backend=torch", "trainer.precision=64-true", "trainer.threads=1", "data.test_size=100"]

# Batch norm (synchronised over the ranks), dropout and augmentation, all drawn per global
# batch; 541 training images in global batches of 60 end with a batch of one image, which
# rank 0 takes while rank 1 joins the step with none.
WITH_BATCH_NORM = [
    *TINY,
    "model=alexnet_lite",
    "model.filters=[4,4,4,4,4]",
    "model.hidden=[16,16]",
    "norm=batch",
    "data.augment=true",
    "data.train_size=601",
    "trainer.epochs=2",
]

# Long enough to be interrupted mid-run: 3 epochs of 36 global batches of 20.
NO_NORM = [
    *TINY,
    "model.filters=4",
    "model.hidden=16",
    "data.train_size=800",
    "trainer.epochs=3",
    "trainer.checkpoint_every_steps=5",
]


def train(root: Path, *args: str) -> Path:
    root.mkdir()
    result = run_cnnlab("train", *args, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir(root)


def assert_same_weights(a: Path, b: Path) -> float:
    """Parameters, running statistics and optimizer state agree; returns the largest gap."""
    wa, wb = params(a / "checkpoints" / "last.npz"), params(b / "checkpoints" / "last.npz")
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wb[key], wa[key], rtol=1e-10, atol=1e-12, err_msg=key)
    return max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)


def assert_same_metrics(a: Path, b: Path) -> None:
    ra, rb = untimed(a / "metrics.jsonl"), untimed(b / "metrics.jsonl")
    assert [r["kind"] for r in ra] == [r["kind"] for r in rb]
    for x, y in zip(ra, rb, strict=True):
        for key, value in x.items():
            if isinstance(value, float):
                assert y[key] == pytest.approx(value, rel=1e-9), key
            elif key != "per_class_acc":
                assert y[key] == value, key


def test_two_ranks_with_batch_norm_end_as_one_process_with_twice_the_batch(tmp_path):
    one = train(tmp_path / "one", *WITH_BATCH_NORM, "trainer.batch_size=60")
    two = train(tmp_path / "two", *WITH_BATCH_NORM, "trainer.batch_size=30", "trainer.devices=2")
    assert_same_weights(one, two)
    assert any(k.endswith("running_var") for k in params(two / "checkpoints" / "last.npz"))
    assert_same_metrics(one, two)
    r1, r2 = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert (r2["devices"], r2["batch_size"], r2["steps"]) == (2, 60, r1["steps"])
    assert r2["test_acc"] == r1["test_acc"]

    # Rank 0 alone wrote the outputs, in the one run directory.
    assert [p.parent for p in (tmp_path / "two").glob("outputs/*/*/results.json")] == [two]
    assert len(list(two.glob("events.out.tfevents.*"))) == 1
    assert {p.name for p in (two / "checkpoints").iterdir()} == {"last.npz", "best.npz"}
    assert (two / "history.png").is_file()
    log = (two / "train.log").read_text()
    assert log.count("epoch 1:") == 1 and log.count("test accuracy") == 1


def _start(root: Path, *args: str) -> subprocess.Popen:
    root.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(root: Path, proc: subprocess.Popen, epoch: int = 0) -> None:
    """Poll until the running job has a mid-epoch checkpoint in ``epoch`` or later."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for path in root.glob("outputs/*/*/checkpoints/last.npz"):
            try:
                with np.load(path, allow_pickle=False) as data:
                    loop = json.loads(data["__meta__"].tobytes())["loop"]
            except (OSError, ValueError, KeyError):
                continue
            if loop["epoch"] >= epoch and loop["position"] > 0:
                return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.02)
    raise AssertionError("no mid-epoch checkpoint appeared")


def test_interrupted_ranks_checkpoint_together_and_resume_to_the_one_process_weights(tmp_path):
    one = train(tmp_path / "one", *NO_NORM, "trainer.batch_size=20")
    proc = _start(tmp_path / "two", *NO_NORM, "trainer.batch_size=10", "trainer.devices=2")
    _wait_for_checkpoint(tmp_path / "two", proc, epoch=1)
    proc.send_signal(signal.SIGINT)  # to the parent only: it passes the signal on to the ranks
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    two = run_dir(tmp_path / "two")
    results = json.loads((two / "results.json").read_text())
    assert results["status"] == "interrupted"
    with np.load(two / "checkpoints" / "last.npz", allow_pickle=False) as data:
        meta = json.loads(data["__meta__"].tobytes())
    assert meta["loop"]["step"] == results["steps"] < 3 * 36
    # The checkpoint of a DDP run has the keys of a one-process run (no "module." prefixes).
    assert (
        params(two / "checkpoints" / "last.npz").keys()
        == params(one / "checkpoints" / "last.npz").keys()
    )

    resumed = run_cnnlab("train", f"trainer.resume={two}", cwd=tmp_path / "two")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((two / "results.json").read_text())["status"] == "completed"
    assert_same_weights(one, two)
    assert_same_metrics(one, two)


def _workers(parent: int) -> list[int]:
    """Pids of the spawned ranks of ``parent`` (its children running multiprocessing's
    spawn_main, not its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_killed_rank_ends_the_run_with_one_line(tmp_path):
    # Far more steps than it will take: the run must end because a rank died.
    args = [*NO_NORM, "trainer.epochs=100", "trainer.batch_size=10", "trainer.devices=2"]
    proc = _start(tmp_path / "run", *args)
    _wait_for_checkpoint(tmp_path / "run", proc)
    ranks = _workers(proc.pid)
    assert len(ranks) == 2
    os.kill(ranks[-1], signal.SIGKILL)  # the rank started last: rank 1, as a rule
    killed = time.monotonic()
    out, err = proc.communicate(timeout=60)
    ended = time.monotonic() - killed
    assert proc.returncode == 1
    assert re.search(r"rank \d was killed by SIGKILL; the other ranks were stopped", out + err)
    assert "Traceback" not in err  # the survivor's lost connection is not reported
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)
    assert ended < 30, f"took {ended:.1f} s to notice"
    # The last good checkpoint stays.
    assert params(run_dir(tmp_path / "run") / "checkpoints" / "last.npz")


def test_several_devices_need_a_torch_backend(tmp_path):
    result = run_cnnlab("train", "backend=im2col", "trainer.devices=2", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "backend=torch" in lines[0], result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.devices=0"], "trainer.devices must be >= 1"),
        (["backend=naive", "trainer.devices=3"], "needs backend=torch or backend=cuda"),
    ],
)
def test_device_counts_are_checked_before_anything_runs(overrides, message):
    from cnnlab.commands.train import check_config
    from cnnlab.config import compose

    with pytest.raises(UsageError, match=message):
        check_config(compose("train", overrides))


def test_more_gpus_than_visible_is_a_usage_error(monkeypatch):
    import torch

    from cnnlab.backends import get_backend
    from cnnlab.train.distributed import check

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match="needs 2 GPUs on this machine, 1 visible"):
        check(2, get_backend("cuda"))
    check(1, get_backend("cuda"))  # one device needs no process group


def test_torchrun_world_size_must_match_devices(monkeypatch):
    from cnnlab.backends import get_backend
    from cnnlab.train.distributed import check

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UsageError, match="torchrun started 2 processes"):
        check(1, get_backend("torch"))
    check(2, get_backend("torch"))


# -- the launcher, with rank functions of its own -------------------------------------------


def _fail_on_rank_1(payload: str, group) -> int:
    """Rank 1 raises while rank 0 waits for it in a collective, which would hang forever if
    nobody noticed."""
    if group.rank == 1:
        raise ValueError(payload)
    group.barrier()
    return 0


def _usage_error_everywhere(payload: str, group) -> int:
    raise UsageError(f"{payload} on rank {group.rank}")


def test_a_rank_that_raises_ends_the_run_with_its_error(capfd):
    from cnnlab.train.spawn import spawn

    with pytest.raises(RunError, match=r"^rank 1 failed: ValueError: boom; the other ranks"):
        spawn(_fail_on_rank_1, 2, "boom")
    err = capfd.readouterr().err
    assert "Traceback" in err and "ValueError: boom" in err  # the cause's traceback, once
    assert "Connection closed" not in err  # not rank 0's lost peer

    with pytest.raises(UsageError, match=r"^bad on rank 0$"):
        spawn(_usage_error_everywhere, 2, "bad")
