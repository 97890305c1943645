"""A run's status in run.json from its first moment to its last, however the session ends, and
a run whose process died without a word read as failed."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass

import pytest

from cnnlab.errors import RunError
from cnnlab.rundir import RunLock
from cnnlab.runs.status import record_status, status_of, tracked


@dataclass
class Ended:
    code: int


def run_json(run_dir):
    return json.loads((run_dir / "run.json").read_text())


def test_a_session_is_running_until_its_results_say_how_it_ended(tmp_path):
    seen = []

    def session():
        seen.append(run_json(tmp_path)["status"])
        record_status(tmp_path, "completed")  # as writing results.json does
        return Ended(0)

    assert tracked(tmp_path, "net-numpy", session) == Ended(0)
    record = run_json(tmp_path)
    assert seen == ["running"]
    assert record["status"] == "completed" and record["name"] == "net-numpy"
    assert record["started"] <= record["ended"]


def test_a_resumed_session_keeps_the_first_name_and_start(tmp_path):
    tracked(tmp_path, "first", lambda: Ended(0))
    first = run_json(tmp_path)
    tracked(tmp_path, "second", lambda: Ended(130))
    again = run_json(tmp_path)
    assert again["name"] == "first" and again["started"] == first["started"]
    assert again["status"] == "interrupted"  # from the exit code: no results written


def raises(error):
    def session():
        raise error

    return session


@pytest.mark.parametrize(
    ("error", "before", "after"),
    [
        (RuntimeError("a bug"), None, "failed"),
        (RunError("files missing"), None, "failed"),
        (KeyboardInterrupt(), None, "interrupted"),
        # A diverged run raises after its results said so: the status stays.
        (RunError("loss became nan"), "diverged", "diverged"),
        # Trained, then finishing the outputs failed: exit code 1, so failed.
        (OSError("disk full"), "completed", "failed"),
    ],
)
def test_a_session_that_raises_ends_failed_or_interrupted(tmp_path, error, before, after):
    def session():
        if before is not None:
            record_status(tmp_path, before)
        raise error

    with pytest.raises(type(error)):
        tracked(tmp_path, "net", session)
    assert run_json(tmp_path)["status"] == after


def test_running_is_true_only_while_a_process_holds_the_lock(tmp_path):
    running = {"status": "running"}
    with RunLock(tmp_path):
        assert status_of(tmp_path, running, {}) == "running"
        assert status_of(tmp_path, {}, {}) == "running"  # a run from before run.json
    # The process is gone (the kernel dropped its lock): it died without a word.
    assert status_of(tmp_path, running, {}) == "failed"
    assert status_of(tmp_path, {}, {}) == "failed"
    assert status_of(tmp_path, {"status": "diverged"}, {"status": "completed"}) == "diverged"
    assert status_of(tmp_path, {}, {"status": "interrupted"}) == "interrupted"


def test_sigterm_outside_the_training_loop_ends_the_session_interrupted(tmp_path):
    before = signal.getsignal(signal.SIGTERM)

    def session():  # loading data, say: the loop's own handler is not installed yet
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal interrupts this
        return Ended(0)

    with pytest.raises(KeyboardInterrupt):
        tracked(tmp_path, "net", session)
    assert run_json(tmp_path)["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # restored
