"""`cnnlab runs compare`: exactly the config keys that differ, the metrics side by side, one
plot, and one line for anything that is not a training run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.runs.compare import ABSENT, differing, load
from tests.runs.fake import config, fake_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def three(tmp_path, monkeypatch):
    """Three runs that differ in optim.lr, trainer.epochs and a key only one has, and in keys
    that do not describe the experiment (resume, threads... see cnnlab.runs.naming)."""
    monkeypatch.chdir(tmp_path)
    a = config(lr=0.1, resume=None, log_every=50)
    b = config(lr=0.01, resume="outputs/x", log_every=10, overwrite=True, threads=4)
    c = config(lr=0.01, epochs=5, label_smoothing=0.1)
    for cfg, root in ((a, "/data/a"), (b, "/data/b"), (c, "/data/c")):
        cfg["data"]["root"] = root
    return [
        fake_run(
            tmp_path / "a",
            a,
            run={"name": "run-a", "status": "completed"},
            results={"test_acc": 0.5, "wall_s": 3.0},
            val_accs=[0.3, 0.5],
        ),
        fake_run(tmp_path / "b", b, run={"name": "run-b", "status": "diverged"}),
        fake_run(tmp_path / "c", c, run={"name": "run-c", "status": "interrupted"}, val_accs=[0.2]),
    ]


def test_exactly_the_keys_that_differ_are_listed(three):
    runs = load(three)
    assert differing(runs) == {
        "optim.lr": [0.1, 0.01, 0.01],
        "trainer.epochs": [2, 2, 5],
        "trainer.label_smoothing": [ABSENT, ABSENT, 0.1],
    }
    assert differing(runs[1:2] * 2) == {}
    # 1 and 1.0, True and 1 are different values in a config.
    x, y = load(three[:2])
    x.config["k"], y.config["k"] = 1, 1.0
    assert "k" in differing([x, y])


def test_compare_prints_keys_and_metrics_and_writes_one_plot(three):
    result = CliRunner().invoke(app, ["runs", "compare", *map(str, three), "--plot", "p/lr.png"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Config keys that differ (3)" in text
    row = next(ln for ln in text.splitlines() if "optim.lr" in ln)
    assert [cell.strip() for cell in row.split("│")][1:-1] == ["optim.lr", "0.1", "0.01", "0.01"]
    assert "(absent)" in text and "trainer.resume" not in text and "data.root" not in text
    for cell in ("run-a", "run-b", "run-c", "diverged", "50.00%", "3.0 s"):
        assert cell in text, cell
    assert text.strip().endswith("Plot: p/lr.png")
    assert (three[0].parent / "p" / "lr.png").read_bytes()[:8] == PNG
    assert not list(three[0].parent.glob("compare.png"))


def test_compare_json_has_each_runs_metrics_and_writes_the_default_plot_here(three):
    result = CliRunner().invoke(app, ["runs", "compare", "a", "b", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["differ"] == {"optim.lr": [0.1, 0.01]}
    assert report["plot"] == "compare.png"
    assert [r["name"] for r in report["runs"]] == ["run-a", "run-b"]
    assert report["runs"][0] | {"dir": ""} == {
        "name": "run-a",
        "dir": "",
        "status": "completed",
        "epochs": 2,
        "best_val_acc": 0.5,
        "val_acc": 0.5,
        "val_loss": 0.5,
        "test_acc": 0.5,
        "wall_s": 3.0,
    }
    assert (three[0].parent / "compare.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["a"], "give two run directories or more"),
        (["a", "nowhere"], "nowhere: no such folder"),
        (["a", "stray"], "stray: not a run directory (it has no .hydra/config.yaml)"),
        (["a", "ev"], "ev: a run of cnnlab eval, not of cnnlab train"),
    ],
)
def test_anything_but_training_runs_is_one_line_and_exit_2(tmp_path, monkeypatch, args, line):
    fake_run(tmp_path / "a", run={"status": "completed"})
    fake_run(tmp_path / "ev", job="eval")
    (tmp_path / "stray").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["runs", "compare", *args])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == f"cnnlab runs compare: {line}"
    assert not (tmp_path / "compare.png").exists()
