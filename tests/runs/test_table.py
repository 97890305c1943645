"""`cnnlab runs`: the rows of runs written by hand in every state, their filters and order, and
the table, JSON and CSV the command prints."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import UsageError
from cnnlab.runs.table import collect, flatten, ordered, select
from tests.cli import run_cnnlab
from tests.runs.fake import config, fake_run


def started(hour: int) -> str:
    return f"2026-12-01T{hour:02d}:00:00+00:00"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Five training runs (every status, two models, single runs and a sweep's job), one eval
    run and a stray folder, under tmp_path; the current directory is tmp_path."""
    out = tmp_path / "outputs" / "2026-12-01"
    fake_run(
        out / "10-00-00",
        config("lenet", "torch", lr=0.1),
        ["model=lenet", "backend=torch", "optim.lr=0.1", "hydra.job.chdir=false"],
        run={"name": "lenet-torch-lr=0.1", "status": "completed", "started": started(10)},
        results={"status": "completed", "test_acc": 0.65, "wall_s": 12.0},
        val_accs=[0.5, 0.7],
    )
    fake_run(
        out / "09-00-00",
        config(lr=1e6),
        ["optim.lr=1e6"],
        run={"name": "threelayer-im2col-lr=1e6", "status": "diverged", "started": started(9)},
        results={"status": "diverged", "test_acc": None, "wall_s": 1.0},
    )
    fake_run(
        out / "11-00-00",
        config(epochs=50),
        ["trainer.epochs=50"],
        run={
            "name": "threelayer-im2col-epochs=50",
            "status": "interrupted",
            "started": started(11),
        },
        results={"status": "interrupted", "wall_s": 30.0},
        val_accs=[0.4],
    )
    # Its process died before it could say how: run.json still says running, no lock held.
    fake_run(
        out / "12-00-00",
        config(),
        [],
        run={"name": "threelayer-im2col", "status": "running", "started": started(12)},
    )
    fake_run(
        tmp_path / "multirun" / "2026-12-01" / "08-00-00" / "0",
        config("resnet18", "torch"),
        ["model=resnet18", "backend=torch"],
        run={"name": "resnet18-torch", "status": "completed", "started": started(8)},
        results={"status": "completed", "test_acc": 0.88, "wall_s": 95.5},
        val_accs=[0.9],
    )
    fake_run(out / "13-00-00", config(), ["checkpoint=x"], job="eval")
    (out / "stray").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def names(rows) -> list[str]:
    return [r.name for r in rows]


def test_every_training_run_is_one_row_with_its_status_and_metrics(runs):
    rows = ordered(collect([Path("outputs"), Path("multirun")]))
    assert names(rows) == [
        "resnet18-torch",
        "threelayer-im2col-lr=1e6",
        "lenet-torch-lr=0.1",
        "threelayer-im2col-epochs=50",
        "threelayer-im2col",
    ]
    assert [r.status for r in rows] == [
        "completed",
        "diverged",
        "completed",
        "interrupted",
        "failed",
    ]
    lenet = rows[2]
    assert (lenet.model, lenet.backend, lenet.epochs) == ("lenet", "torch", 2)
    assert (lenet.best_val_acc, lenet.test_acc, lenet.wall_s) == (0.7, 0.65, 12.0)
    assert lenet.overrides == ("model=lenet", "backend=torch", "optim.lr=0.1")  # Hydra's out
    assert (rows[1].epochs, rows[1].best_val_acc) == (0, None)
    assert rows[0].started.isoformat() == started(8)


def test_filters_keep_the_runs_that_pass_every_one(runs):
    rows = collect([Path("outputs"), Path("multirun")])
    assert set(names(select(rows, statuses=["completed"]))) == {
        "resnet18-torch",
        "lenet-torch-lr=0.1",
    }
    assert names(select(rows, models=["lenet"], backends=["torch"])) == ["lenet-torch-lr=0.1"]
    assert set(names(select(rows, backends=["torch"], statuses=["failed"]))) == set()
    # Config values match as numbers too: 1e-1 is 0.1.
    assert names(select(rows, where=[("optim.lr", "1e-1")])) == ["lenet-torch-lr=0.1"]
    assert len(select(rows, where=[("trainer.overwrite", "false")])) == 5
    with pytest.raises(UsageError, match="no run has this config key"):
        select(rows, where=[("optim.learning_rate", "0.1")])
    with pytest.raises(UsageError, match="no such status; choose from completed"):
        select(rows, statuses=["done"])


def test_sort_keys_put_the_best_first_and_runs_without_a_value_last(runs):
    rows = collect([Path("outputs"), Path("multirun")])
    assert names(ordered(rows, "val"))[:3] == [
        "resnet18-torch",
        "lenet-torch-lr=0.1",
        "threelayer-im2col-epochs=50",
    ]
    assert names(ordered(rows, "test"))[:2] == ["resnet18-torch", "lenet-torch-lr=0.1"]
    assert names(ordered(rows, "wall", reverse=True))[:2] == [
        "resnet18-torch",
        "threelayer-im2col-epochs=50",
    ]
    assert names(ordered(rows, "name"))[0] == "lenet-torch-lr=0.1"
    with pytest.raises(UsageError, match="--sort speed: no such key"):
        ordered(rows, "speed")


def test_flatten_keeps_lists_and_empty_mappings_as_values():
    assert flatten({"a": {"b": 1, "c": [1, 2], "d": {}}, "e": None}) == {
        "a.b": 1,
        "a.c": [1, 2],
        "a.d": {},
        "e": None,
    }


def invoke(*args: str):
    result = CliRunner().invoke(app, ["runs", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_and_csv_print_every_column_of_the_rows_shown(runs):
    rows = json.loads(invoke("--json", "--status", "completed,diverged", "--sort", "test"))
    assert [r["name"] for r in rows] == [
        "resnet18-torch",
        "lenet-torch-lr=0.1",
        "threelayer-im2col-lr=1e6",
    ]
    assert rows[1] == {
        "name": "lenet-torch-lr=0.1",
        "dir": "outputs/2026-12-01/10-00-00",
        "started": started(10),
        "model": "lenet",
        "backend": "torch",
        "overrides": ["model=lenet", "backend=torch", "optim.lr=0.1"],
        "epochs": 2,
        "best_val_acc": 0.7,
        "test_acc": 0.65,
        "wall_s": 12.0,
        "status": "completed",
    }
    table = list(csv.DictReader(io.StringIO(invoke("multirun", "--csv"))))
    assert len(table) == 1
    assert table[0]["overrides"] == "model=resnet18 backend=torch"
    assert table[0]["test_acc"] == "0.88" and table[0]["dir"] == "multirun/2026-12-01/08-00-00/0"
    assert invoke("outputs/2026-12-01/13-00-00", "--csv").strip() == (
        "name,dir,started,model,backend,overrides,epochs,best_val_acc,test_acc,wall_s,status"
    )  # an eval run: no training run, the header only


def test_the_table_shows_each_run_in_one_row(runs):
    text = invoke("--model", "lenet", "--model", "resnet18")
    assert "Training runs: 2 of 5" in text
    lines = [ln for ln in text.splitlines() if "lenet-torch-lr=0.1" in ln]
    assert len(lines) == 1
    for cell in ("2026-12-01 10:00:00", "optim.lr=0.1", "70.00%", "65.00%", "12.0 s", "completed"):
        assert cell in lines[0], cell
    assert "1 min 35 s" in text  # the resnet18 run's wall time
    assert invoke("list", "multirun", "--where", "model.name=resnet18").count("resnet18-torch") == 1


def test_no_runs_is_one_line_and_exit_0(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke().strip() == "No training runs under outputs multirun."
    assert json.loads(invoke("--json")) == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["nowhere"], "cnnlab runs: nowhere: no such folder"),
        (["f.txt"], "cnnlab runs: f.txt: not a folder"),
        (["--json", "--csv"], "cnnlab runs: --json and --csv: give one of them"),
        (["--where", "optim.lr"], "cnnlab runs: --where optim.lr: expected key=value"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(tmp_path, monkeypatch, args, line):
    (tmp_path / "f.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["runs", *args])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_installed_command_reports_a_mistake_the_same_way(tmp_path):
    result = run_cnnlab("runs", "nowhere", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "cnnlab runs: nowhere: no such folder\n"
