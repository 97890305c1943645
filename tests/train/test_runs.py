"""Run directories and checkpoints that never lose or mix data, tried as a user (and a hostile
one) would: through the CLI, checking the exit code, that the error is one line on stderr,
and that no other run's files changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli import run_cnnlab
from tests.train.test_train_cli import (
    RESUMABLE,
    SMALL,
    _start,
    _wait_for_mid_epoch_checkpoint,
    params,
    run_dir,
    untimed,
)

MNIST = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"


def one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The single stderr line of a run that exited with ``code``; it holds ``words``."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the lock file aside) and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".cnnlab.lock"
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small completed run (3 steps) to resume, copy and damage; tests copy it first."""
    root = tmp_path_factory.mktemp("finished")
    result = run_cnnlab("train", *SMALL, "trainer.max_steps=3", "hydra.run.dir=run", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "run"


def copy_of(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


# -- 1: resume writes where it is pointed ------------------------------------------------------


def test_a_moved_run_resumes_in_its_new_place_and_never_recreates_the_old(tmp_path, finished):
    moved = copy_of(finished, tmp_path / "moved")
    before = fingerprint(finished)
    result = run_cnnlab("train", f"trainer.resume={moved}", "trainer.max_steps=6", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((moved / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 6
    assert fingerprint(finished) == before  # the run it was copied from is untouched
    assert not (tmp_path / "outputs").exists()


def test_a_loose_checkpoint_resumes_into_a_new_run_that_says_where_it_came_from(tmp_path, finished):
    loose = tmp_path / "kept.npz"
    shutil.copy(finished / "checkpoints" / "last.npz", loose)
    before = fingerprint(finished)
    result = run_cnnlab("train", f"trainer.resume={loose}", "trainer.max_steps=5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((run_dir(tmp_path) / "results.json").read_text())
    assert results["resumed_from"] == str(loose) and results["steps"] == 5
    assert fingerprint(finished) == before


def test_a_killed_run_resumed_from_a_copy_elsewhere_ends_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    assert run_cnnlab("train", *RESUMABLE, cwd=straight).returncode == 0
    proc = _start(killed, RESUMABLE)
    _wait_for_mid_epoch_checkpoint(killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    original = run_dir(killed)
    assert not (original / "results.json").exists()
    copy = copy_of(original, tmp_path / "elsewhere" / "copy")
    before = fingerprint(original)
    resumed = run_cnnlab("train", f"trainer.resume={copy}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not (tmp_path / "outputs").exists()  # continued in the copy, no new directory
    a = params(run_dir(straight) / "checkpoints" / "last.npz")
    b = params(copy / "checkpoints" / "last.npz")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), "weights differ after resume"
    assert untimed(run_dir(straight) / "metrics.jsonl") == untimed(copy / "metrics.jsonl")
    r1 = json.loads((run_dir(straight) / "results.json").read_text())
    r2 = json.loads((copy / "results.json").read_text())
    assert [r1[k] for k in ("test_acc", "val_acc", "steps")] == [
        r2[k] for k in ("test_acc", "val_acc", "steps")
    ]
    assert fingerprint(original) == before


# -- 2, 3: checkpoints are checked before use ----------------------------------------------------


def _damaged(source: Path, target: Path, how: str) -> None:
    with np.load(source, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    if how == "missing parameter":
        del arrays["param/conv1.w"]
    elif how == "wrong shape":
        arrays["param/fc2.w"] = arrays["param/fc2.w"][:, :3].copy()
    elif how == "unknown key":
        arrays["extra/x"] = np.zeros(3)
    elif how == "bad config":
        meta["config"] = "model: [unclosed"
    elif how == "config of no model":
        meta["config"] = "model: {name: threelayer}"
    elif how == "truncated":
        target.write_bytes(source.read_bytes()[:250_000])
        return
    elif how == "random bytes":
        target.write_bytes(np.random.default_rng(0).bytes(5000))
        return
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with target.open("wb") as f:
        np.savez(f, **arrays)


DAMAGE = {
    "missing parameter": "param/conv1.w missing",
    "wrong shape": "param/fc2.w is float32[6, 3], expected float32[6, 32]",
    "unknown key": "extra/x unexpected",
    "bad config": "its config does not parse",
    "config of no model": "its config does not describe a model",
    "truncated": "is incomplete or damaged",
    "random bytes": "is not a cnnlab checkpoint",
}


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("command", ["eval", "train"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_nothing_is_written(
    tmp_path, finished, how, command
):
    bad = tmp_path / "bad.npz"
    _damaged(finished / "checkpoints" / "last.npz", bad, how)
    key = "checkpoint" if command == "eval" else "trainer.resume"
    result = run_cnnlab(command, f"{key}={bad}", cwd=tmp_path)
    one_line(result, 1, str(bad), DAMAGE[how])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


# -- 4, 6, 11: mistakes before anything runs -----------------------------------------------------


def test_eval_without_a_checkpoint_is_one_line(tmp_path):
    one_line(run_cnnlab("eval", cwd=tmp_path), 2, "checkpoint: give the run to evaluate")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_a_thread_count_below_one_is_one_line_before_a_run_directory_is_made(tmp_path, threads):
    result = run_cnnlab("train", f"trainer.threads={threads}", cwd=tmp_path)
    one_line(result, 2, f"trainer.threads must be >= 1, got {threads}")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("command", ["train", "summary"])
def test_a_run_directory_that_is_a_file_is_one_line(tmp_path, command):
    (tmp_path / "f").write_text("x\n")
    result = run_cnnlab(command, "hydra.run.dir=f", cwd=tmp_path)
    one_line(result, 2, "hydra.run.dir: f is a file, not a folder")
    assert (tmp_path / "f").read_text() == "x\n"


# -- 7: a write that fails ---------------------------------------------------------------------


def test_a_write_that_fails_ends_the_run_as_failed_in_one_line(tmp_path):
    # The file-size limit (in KiB) lets the small outputs through but not a checkpoint.
    command = " ".join(
        [
            "ulimit -f 300;",
            sys.executable,
            "-m cnnlab train",
            *SMALL,
            "model.filters=16",
            "model.hidden=128",
            "hydra.run.dir=run",
        ]
    )
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    one_line(result, 1, "could not write", "File too large")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed"
    # Checkpoints are written to a temporary file first: none is left half-written.
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.suffix == ".tmp"]


# -- 8, 9: what a resume keeps and what it may change ------------------------------------------


def test_wall_time_carries_across_a_resume(tmp_path, finished):
    run = copy_of(finished, tmp_path / "run")
    before = json.loads((run / "results.json").read_text())["wall_s"]
    result = run_cnnlab("train", f"trainer.resume={run}", "trainer.max_steps=5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as data:
        saved = json.loads(data["__meta__"].tobytes())["loop"]["wall_s"]
    after = json.loads((run / "results.json").read_text())["wall_s"]
    assert saved >= before > 0
    assert after > saved


@pytest.mark.parametrize("override", ["model=lenet", "optim.lr=0.5", "trainer.precision=64-true"])
def test_an_override_a_resume_cannot_honour_is_refused_naming_it(tmp_path, finished, override):
    run = copy_of(finished, tmp_path / "run")
    before = fingerprint(run)
    result = run_cnnlab("train", f"trainer.resume={run}", override, cwd=tmp_path)
    one_line(result, 2, override, "a resumed run keeps the config it started with")
    assert fingerprint(run) == before


def test_a_resume_may_train_further(tmp_path, finished):
    run = copy_of(finished, tmp_path / "run")
    result = run_cnnlab(
        "train", f"trainer.resume={run}", "trainer.max_steps=null", "trainer.epochs=2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((run / "results.json").read_text())
    # 3 steps ended the first epoch; the second is a full one of 11.
    assert results["epochs"] == 2 and results["steps"] == 14


@pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST is not in ../shared/datasets")
def test_data_root_is_stored_absolute_and_eval_can_be_pointed_elsewhere(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b" / "c"
    a.mkdir(), b.mkdir(parents=True)
    shutil.copytree(MNIST, tmp_path / "m")
    tiny = ["model=lenet", "data=mnist", "data.limit=200", "trainer.max_steps=2"]
    result = run_cnnlab("train", *tiny, "data.root=../m", "data.download=false", cwd=a)
    assert result.returncode == 0, result.stdout + result.stderr
    run = run_dir(a)
    evaluated = run_cnnlab("eval", f"checkpoint={run}", cwd=b)  # another working directory
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    (tmp_path / "m").rename(tmp_path / "moved")
    lost = run_cnnlab("eval", f"checkpoint={run}", "split=val", cwd=b)
    assert lost.returncode == 1 and str(tmp_path / "m") in lost.stdout + lost.stderr
    found = run_cnnlab("eval", f"checkpoint={run}", f"data.root={tmp_path / 'moved'}", cwd=b)
    assert found.returncode == 0, found.stdout + found.stderr


# -- 10: one owner per run directory -------------------------------------------------------------


def test_a_second_run_into_a_run_directory_is_refused_unless_it_overwrites(tmp_path, finished):
    run = copy_of(finished, tmp_path / "run")
    before = fingerprint(run)
    again = run_cnnlab("train", *SMALL, f"hydra.run.dir={run}", cwd=tmp_path)
    one_line(again, 2, "already holds a run", f"trainer.resume={run}")
    assert fingerprint(run) == before
    replaced = run_cnnlab(
        "train",
        *SMALL,
        "trainer.max_steps=2",
        f"hydra.run.dir={run}",
        "trainer.overwrite=true",
        cwd=tmp_path,
    )
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["kind"] for ln in lines] == ["epoch", "test"]  # only the new run's


def test_a_run_directory_in_use_is_refused_at_once(tmp_path):
    busy = [*RESUMABLE, "hydra.run.dir=busy"]
    first = _start(tmp_path, busy)
    try:
        deadline = time.monotonic() + 60
        # Hydra writes overrides.yaml after config.yaml: then the record is complete.
        overrides = tmp_path / "busy" / ".hydra" / "overrides.yaml"
        while not (overrides.is_file() and overrides.stat().st_size > 0):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        record = (tmp_path / "busy" / ".hydra" / "config.yaml").read_bytes()
        second = run_cnnlab("train", *SMALL, "hydra.run.dir=busy", cwd=tmp_path)
        one_line(second, 1, "is in use by another cnnlab run")
        assert (tmp_path / "busy" / ".hydra" / "config.yaml").read_bytes() == record
    finally:
        first.kill()
        first.wait(timeout=60)
    # SIGKILL released the lock: the killed run can be resumed at once.
    resumed = run_cnnlab("train", f"trainer.resume={tmp_path / 'busy'}", cwd=tmp_path)
    assert resumed.returncode in (0, 2), resumed.stderr  # 2 only if no checkpoint was saved yet
    assert "in use" not in resumed.stderr


# -- 13: permissions ---------------------------------------------------------------------------


def test_checkpoints_have_the_permissions_of_every_other_output(finished):
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in [finished / "results.json", *(finished / "checkpoints").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
