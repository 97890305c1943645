"""The issue's acceptance test, through the command line as a user runs it: a sweep of four
jobs (one completes, one diverges, one is stopped by a real SIGTERM, one fails after its run
directory is made), then ``cnnlab runs`` lists each with its status and name, and
``cnnlab runs compare`` shows exactly the keys that differ."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from cnnlab.cli import app

HERE = Path(__file__).resolve().parent
# The four jobs' presets (tests/runs/conf/experiment/runs_*.yaml), in sweep (job) order.
CASES = ("runs_completes", "runs_diverges", "runs_signalled", "runs_fails")


def _epochs_done(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    return sum('"kind": "epoch"' in line for line in lines)


def _sweep(root: Path) -> tuple[int, Path]:
    """Run the sweep in ``root``; SIGTERM it once job 2 has trained an epoch. Returns the
    sweep's exit code and directory."""
    (root / "no_mnist_here").mkdir()  # runs_fails' data folder: there, but empty
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "-m",
        f"hydra.searchpath=[file://{HERE / 'conf'}]",
        f"experiment={','.join(CASES)}",
        "trainer.threads=1",
    ]
    log = (root / "sweep.log").open("w")
    proc = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not any(_epochs_done(m) for m in root.glob("multirun/*/*/2/metrics.jsonl")):
            assert proc.poll() is None, (root / "sweep.log").read_text()
            assert time.monotonic() < deadline, "job 2 never trained an epoch"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # the training loop stops after its current step
        code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    (sweep,) = root.glob("multirun/*/*")
    return code, sweep


def runs(*args: str) -> str:
    """``cnnlab runs <args>``'s output (in this process: the sweep above is the real CLI)."""
    result = CliRunner().invoke(app, ["runs", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_runs_lists_a_sweeps_four_endings_and_compare_shows_what_differs(tmp_path, monkeypatch):
    code, sweep = _sweep(tmp_path)
    assert code == 130, (tmp_path / "sweep.log").read_text()  # the worst job's: interrupted
    monkeypatch.chdir(tmp_path)

    rows = json.loads(runs("--json", "--sort", "dir"))
    assert [Path(r["dir"]).name for r in rows] == ["0", "1", "2", "3"]
    assert [r["status"] for r in rows] == ["completed", "diverged", "interrupted", "failed"]
    assert [r["name"] for r in rows] == [
        f"threelayer-im2col-experiment={case}" for case in CASES
    ]  # trainer.threads is bookkeeping: not in the name
    assert [r["epochs"] >= 1 for r in rows] == [True, False, True, False]
    assert rows[0]["test_acc"] is not None and rows[2]["test_acc"] is None
    for row, case in zip(rows, CASES, strict=True):
        assert row["overrides"] == [f"experiment={case}", "trainer.threads=1"]
        results = sweep / Path(row["dir"]).name / "results.json"
        if case != "runs_fails":  # it failed before results.json: run.json says how
            assert json.loads(results.read_text())["name"] == row["name"]

    text = runs("multirun", "--status", "failed,interrupted")
    assert "Training runs: 2 of 4" in text
    assert "runs_signalled" in text and "runs_fails" in text and "runs_completes" not in text

    jobs = [str(sweep / str(i)) for i in range(3)]
    report = json.loads(runs("compare", *jobs, "--json"))
    assert report["differ"] == {"optim.lr": [0.02, 1e6, 0.02], "trainer.epochs": [1, 1, 500]}
    assert [r["status"] for r in report["runs"]] == ["completed", "diverged", "interrupted"]
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
