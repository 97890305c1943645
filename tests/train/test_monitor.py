"""Early stopping and the choice of kept checkpoints (``trainer.monitor``, ``patience``,
``save_top_k``, ``checkpoint_every_epochs``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnlab.train.monitor import Monitor
from tests.cli import run_cnnlab
from tests.train.test_train_cli import SMALL  # its trainer.epochs is overridden below


def _monitor(**trainer: object) -> Monitor:
    return Monitor.of(OmegaConf.create(trainer))


def test_mode_follows_the_name_unless_given():
    assert _monitor(monitor="val_acc").mode == "max"
    assert _monitor(monitor="val_loss").mode == "min"
    assert _monitor(monitor="val_loss", mode="max").mode == "max"
    # A config from before these keys: val_acc, no early stop.
    assert _monitor() == Monitor("val_acc", "max", 0.0, None)


def test_better_needs_more_than_the_margin():
    up, down = Monitor("val_acc", "max"), Monitor("val_loss", "min")
    assert up.better(0.5, None) and down.better(9.0, None)
    assert up.better(0.51, 0.5) and not up.better(0.5, 0.5)
    assert not up.better(0.55, 0.5, margin=0.05) and up.better(0.56, 0.5, margin=0.05)
    assert down.better(0.9, 1.0, margin=0.05) and not down.better(0.96, 1.0, margin=0.05)


def test_ranked_keeps_the_k_best_and_the_earlier_of_a_tie():
    up, down = Monitor("val_acc", "max"), Monitor("val_loss", "min")
    top: list = []
    for epoch, value in enumerate([0.3, 0.5, 0.4, 0.5, 0.2], start=1):
        top = up.ranked(top, value, epoch, 3)
    assert top == [[0.5, 2], [0.5, 4], [0.4, 3]]
    top = []
    for epoch, value in enumerate([1.0, 0.7, 0.9, 0.8], start=1):
        top = down.ranked(top, value, epoch, 2)
    assert top == [[0.7, 2], [0.8, 4]]


def test_value_falls_back_to_training_without_a_val_split():
    m = Monitor("val_loss", "min")
    assert m.value({"val_loss": 0.25, "train_loss": 0.5}) == 0.25
    assert m.value({"val_loss": None, "train_loss": 0.5}) == 0.5


def _expected(values: list[float], mode: str, patience: int, delta: float) -> int | None:
    """The epoch (1-based) a run of these values stops at under the documented rule."""
    best, stale = None, 0
    for epoch, v in enumerate(values, start=1):
        if best is None or (v > best + delta if mode == "max" else v < best - delta):
            stale = 0
        else:
            stale += 1
        if best is None or (v > best if mode == "max" else v < best):
            best = v
        if stale >= patience:
            return epoch
    return None


@pytest.mark.parametrize(
    ("monitor", "patience", "delta"), [("val_loss", 1, 0.02), ("val_acc", 2, 0.05)]
)
def test_a_run_stops_and_keeps_what_the_rule_says(tmp_path, monitor, patience, delta):
    epochs = 8
    result = run_cnnlab(
        "train",
        *SMALL,
        f"trainer.epochs={epochs}",
        f"trainer.monitor={monitor}",
        f"trainer.patience={patience}",
        f"trainer.min_delta={delta}",
        "trainer.save_top_k=2",
        "trainer.checkpoint_every_epochs=2",
        "optim.lr=0.1",  # a rate that makes the validation curve wander, so the rule matters
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = tmp_path.glob("outputs/*/*")
    lines = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    values = [r[monitor] for r in lines if r["kind"] == "epoch"]
    mode = "min" if monitor == "val_loss" else "max"
    stop = _expected(values, mode, patience, delta)
    stop = None if stop == epochs else stop  # stopping at the last epoch is no early stop
    assert stop is not None  # (these settings stop both runs early: the rule is exercised)
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_early"] == stop
    assert results["epochs"] == len(values) == stop
    assert results["status"] == "completed" and results["test_acc"] is not None
    best = min(values) if mode == "min" else max(values)
    assert results["monitor"] == {"key": monitor, "best": best}

    sign = 1 if mode == "min" else -1
    ranked = sorted(range(1, len(values) + 1), key=lambda e: (sign * values[e - 1], e))
    kept = {p.name for p in (out / "checkpoints").iterdir()}
    every = {f"epoch={e:03d}.npz" for e in range(2, len(values) + 1, 2)}
    top = {f"best-epoch={e:03d}.npz" for e in ranked[:2]}
    assert kept == {"last.npz", "best.npz"} | every | top
    # best.npz is the best epoch's state, the same arrays as its best-epoch file.
    with (
        np.load(out / "checkpoints" / "best.npz") as a,
        np.load(out / "checkpoints" / f"best-epoch={ranked[0]:03d}.npz") as b,
    ):
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("param/"))
    assert f"stopped early after epoch {stop}" in result.stderr + result.stdout
