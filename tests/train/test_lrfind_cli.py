"""``cnnlab lrfind`` end to end, in subprocesses on tiny generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli import run_cnnlab
from tests.test_cli import assert_one_line_exit_2

# A few seconds a run on 2 cores: 40 steps of a small net on small shapes data.
TINY = [
    "data.train_size=400",
    "data.test_size=20",
    "model.filters=4",
    "model.hidden=16",
    "trainer.batch_size=20",
    "trainer.threads=1",
    "lrfind.min_lr=1e-4",
    "lrfind.steps=40",
]


@pytest.mark.parametrize("backend", ["im2col", "torch"])
def test_lrfind_writes_its_curve_and_prints_a_suggestion(tmp_path, backend):
    result = run_cnnlab("lrfind", f"backend={backend}", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = sorted(tmp_path.glob("outputs/*/*"))
    record = json.loads((out / "lrfind.json").read_text())
    k = len(record["lrs"])
    assert len(record["losses"]) == len(record["smoothed"]) == k
    expected = np.geomspace(1e-4, 10.0, 40)[:k]
    np.testing.assert_allclose(record["lrs"], expected, rtol=1e-12)
    assert record["stopped_at"] is None or record["stopped_at"] == k - 1
    lr = record["suggestion"]
    assert lr == record["lrs"][record["suggestion_step"]]
    assert f"suggested lr {lr:.3g}" in " ".join(result.stdout.split())
    assert (out / "lrfind.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "lrfind.log").is_file()
    assert record["first_loss"] == record["losses"][0]
    assert record["chance_loss"] == pytest.approx(np.log(6))  # shapes has 6 classes
    assert record["first_loss"] < 2 * record["chance_loss"] and "chance's" not in result.stderr


def test_lrfind_warns_where_the_untrained_loss_is_far_above_chance(tmp_path):
    result = run_cnnlab("lrfind", "init=normal", "init.std=1.0", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = sorted(tmp_path.glob("outputs/*/*"))
    record = json.loads((out / "lrfind.json").read_text())
    ratio = record["first_loss"] / np.log(6)
    assert ratio > 2
    said = " ".join(result.stderr.split())  # a warning: on stderr
    assert f"is {ratio:.1f}x chance's (ln 6 = 1.79)" in said and "init=xavier" in said


def test_lrfind_refuses_a_range_that_does_not_grow(tmp_path: Path):
    result = run_cnnlab("lrfind", "lrfind.min_lr=1", "lrfind.max_lr=0.1", cwd=tmp_path)
    assert_one_line_exit_2(result, "lrfind.min_lr=1 must be below lrfind.max_lr=0.1", tmp_path)
