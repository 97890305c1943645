"""A diverging run (a learning rate far too high) stops with one true line: no numpy warnings,
and the checkpoint it keeps named only where one was saved."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.cli import run_cnnlab
from tests.train.test_train_cli import SMALL, run_dir

DIVERGING = [*SMALL, "optim.lr=1e6"]


def error_line(result) -> str:
    """The run's one error line: on stderr, the only line there; nothing of it on stdout."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "RuntimeWarning" not in output and "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR"), output
    assert "loss became" in lines[0] and "loss became" not in result.stdout
    assert result.stdout.startswith("INFO     train ")  # progress stays on stdout
    return lines[0]


# The naive loops take seconds a step at batch 50; five images diverge as surely.
@pytest.mark.parametrize(
    "backend",
    [["backend=im2col"], ["backend=naive", "trainer.batch_size=5"]],
    ids=["im2col", "naive"],
)
def test_divergence_before_any_checkpoint_claims_none(tmp_path, backend):
    result = run_cnnlab("train", *DIVERGING, *backend, cwd=tmp_path)
    line = error_line(result)
    out = run_dir(tmp_path)
    assert not (out / "checkpoints").exists()
    assert "before any checkpoint was saved" in line and "kept" not in line, line
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"


def test_divergence_names_the_checkpoint_it_keeps(tmp_path):
    result = run_cnnlab("train", *DIVERGING, "trainer.checkpoint_every_steps=1", cwd=tmp_path)
    line = error_line(result)
    last = run_dir(tmp_path) / "checkpoints" / "last.npz"
    with np.load(last, allow_pickle=False) as data:
        saved = json.loads(data["__meta__"].tobytes())["loop"]["step"]
    assert line.endswith(f"the checkpoint of step {saved} is kept: {last}"), line
    # Saved after every step: the one kept is the step before the loss went non-finite.
    assert re.search(r"loss became \w+ at step (\d+)", line).group(1) == str(saved + 1)
