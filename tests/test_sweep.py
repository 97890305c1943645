"""Sweeps: the summary of job records, parallel jobs with joblib, failing jobs, the SLURM preset."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from cnnlab.config import compose, sweeper_params, validate
from cnnlab.errors import UsageError
from cnnlab.sweep import collect, summarize, write_record
from tests.cli import run_cnnlab

ROOT = Path(__file__).resolve().parents[1]

# A train job of a few steps on a little generated data: about 2 s of work.
TINY = [
    "data.train_size=100",
    "data.test_size=50",
    "model.filters=8",
    "model.hidden=32",
    "trainer.batch_size=30",
    "trainer.epochs=1",
    "trainer.max_steps=2",
    "trainer.threads=1",
]


def sweep_dir(root: Path) -> Path:
    (path,) = root.glob("multirun/*/*")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as rows:
        return list(csv.DictReader(rows))


# -- the summary, on job directories made by hand ---------------------------------------------


def fabricate(sweep: Path) -> None:
    """Four job directories as train leaves them, and one that is not a job's."""
    common = ["trainer.epochs=1"]
    write_record(sweep / "0", 0, ["optim.lr=0.1", *common], 0, None, 3.0)
    (sweep / "0" / "results.json").write_text(
        json.dumps({"status": "completed", "val_acc": 0.5, "test_acc": 0.25})
    )
    write_record(sweep / "1", 1, ["optim.lr=1e6", *common], 1, "loss is nan at step 3", 1.5)
    (sweep / "1" / "results.json").write_text(json.dumps({"status": "diverged", "val_acc": None}))
    write_record(sweep / "2", 2, ["optim.lr=0.01", *common], 1, "MNIST files missing", 0.1)
    write_record(sweep / "10", 10, ["optim.lr=[0.5]", *common], 130, None, 2.0)
    (sweep / "10" / "results.json").write_text("{")  # cut short: read as no results
    (sweep / "stray").mkdir()
    (sweep / "stray" / "results.json").write_text(json.dumps({"val_acc": 1.0}))


def test_summary_reads_every_job_record_in_job_order(tmp_path):
    fabricate(tmp_path)
    rows = collect(tmp_path)
    assert [r.job for r in rows] == [0, 1, 2, 10]
    assert [r.status for r in rows] == ["completed", "diverged", "failed", "interrupted"]
    assert [r.exit_code for r in rows] == [0, 1, 1, 130]
    assert rows[0].val_acc == 0.5 and rows[0].test_acc == 0.25 and rows[0].wall_s == 3.0
    assert rows[2].val_acc is None and rows[2].error == "MNIST files missing"
    assert rows[3].dir == "10"


def test_summary_prints_one_table_writes_sweep_csv_and_returns_the_worst_code(tmp_path):
    fabricate(tmp_path)
    out = io.StringIO()
    code = summarize(tmp_path, Console(file=out, width=200))
    assert code == 130
    text = out.getvalue()
    assert "4 jobs, 3 failed" in text
    assert "optim.lr=[0.5]" in text  # as text, not read as a style tag
    assert "trainer.epochs=1" not in text  # the table shows what the sweep varied
    assert "50.00%" in text and "25.00%" in text and "failed (exit 1)" in text
    rows = read_csv(tmp_path / "sweep.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]
    assert rows[0]["overrides"] == "optim.lr=0.1 trainer.epochs=1"  # the CSV keeps them all
    assert rows[0]["val_acc"] == "0.5" and rows[2]["val_acc"] == ""
    assert rows[1]["status"] == "diverged" and rows[1]["error"] == "loss is nan at step 3"


def test_summary_without_accuracies_has_no_accuracy_columns(tmp_path):
    write_record(tmp_path / "0", 0, ["layer=relu"], 0, None, 1.0)
    write_record(tmp_path / "1", 1, ["layer=conv"], 0, None, 1.0)
    out = io.StringIO()
    assert summarize(tmp_path, Console(file=out, width=200)) == 0
    assert "layer=conv" in out.getvalue() and "val acc" not in out.getvalue()


def test_a_sweep_that_ran_no_job_writes_nothing(tmp_path):
    assert summarize(tmp_path / "none") == 0
    assert summarize(tmp_path) == 0
    assert not (tmp_path / "sweep.csv").exists()


# -- sweeps through the command line ----------------------------------------------------------


def test_joblib_runs_the_jobs_of_a_sweep_at_once(tmp_path):
    meet = tmp_path / "meet"
    meet.mkdir()
    result = run_cnnlab(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "optim.lr=0.1,0.01",
        *TINY,
        # Each job waits at its start for the other (tests/rendezvous.py).
        "+hydra.callbacks.rendezvous._target_=tests.rendezvous.Rendezvous",
        f"+hydra.callbacks.rendezvous.folder={meet}",
        "+hydra.callbacks.rendezvous.parties=2",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in meet.iterdir()) == ["0.arrived", "0.met", "1.arrived", "1.met"]
    sweep = sweep_dir(tmp_path)
    for num, lr in (("0", "0.1"), ("1", "0.01")):
        job = sweep / num
        assert f"optim.lr={lr}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
    rows = read_csv(sweep / "sweep.csv")
    assert [(r["job"], r["status"], r["exit_code"]) for r in rows] == [
        ("0", "completed", "0"),
        ("1", "completed", "0"),
    ]
    assert rows[1]["overrides"].startswith("optim.lr=0.01 ")
    for row in rows:
        results = json.loads((sweep / row["dir"] / "results.json").read_text())
        assert float(row["val_acc"]) == pytest.approx(results["val_acc"])
        assert float(row["test_acc"]) == pytest.approx(results["test_acc"])
    assert "2 jobs" in result.stdout and "optim.lr=0.01" in result.stdout


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_failing_job_makes_the_sweep_exit_non_zero(tmp_path, launcher):
    # No MNIST files in the run's folder and no download: that job fails as it loads its data.
    result = run_cnnlab(
        "train",
        "-m",
        f"hydra/launcher={launcher}",
        "data=shapes,mnist",
        "data.download=false",
        "data.limit=100",
        # The generator's own keys (train_size, ...) are not keys of MNIST's config.
        *(o for o in TINY if not o.startswith("data.")),
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    rows = read_csv(sweep_dir(tmp_path) / "sweep.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed"), ("1", "failed")]
    assert "MNIST files missing" in rows[1]["error"]
    assert "1 failed" in result.stdout


def test_a_sweep_into_a_used_directory_sums_up_only_its_own_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    for values in ("0.1,0.01,0.001", "0.1,0.01"):
        args = ["train", "-m", f"optim.lr={values}", f"hydra.sweep.dir={sweep}", *TINY]
        result = run_cnnlab(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    rows = read_csv(sweep / "sweep.csv")
    assert [r["job"] for r in rows] == ["0", "1"]  # not job 2 of the first sweep
    assert (sweep / "2" / "results.json").exists()  # whose outputs stay
    assert "2 jobs" in result.stdout


# -- launcher and sweeper configs -------------------------------------------------------------

SLURM_KEYS = ("partition", "account", "timeout_min", "cpus_per_task", "gpus_per_task", "mem_gb")


def test_the_slurm_launcher_preset_composes_with_its_documented_keys():
    launcher = compose("train", ["hydra/launcher=slurm"], with_hydra=True).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.timeout_min == 60 and launcher.cpus_per_task == 4
    readme = (ROOT / "README.md").read_text()
    for key in SLURM_KEYS:
        assert key in launcher
        assert f"hydra.launcher.{key}" in readme, key
    typed = compose(
        "train",
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_task=1"],
        with_hydra=True,
    )
    assert typed.hydra.launcher.partition == "gpu" and typed.hydra.launcher.gpus_per_task == 1
    with pytest.raises(UsageError, match=r"did you mean hydra\.launcher\.partition"):
        compose("train", ["hydra/launcher=slurm", "hydra.launcher.partiton=gpu"], with_hydra=True)


def test_cfg_hydra_of_a_slurm_sweep_prints_without_running(tmp_path):
    result = run_cnnlab(
        "train", "-m", "hydra/launcher=slurm", "optim.lr=0.1,0.01", "--cfg", "hydra", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "SlurmLauncher" in result.stdout and "cpus_per_task: 4" in result.stdout
    assert not (tmp_path / "multirun").exists()


def test_launcher_keys_exist_once_the_launcher_is_chosen():
    cfg = compose("train", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], with_hydra=True)
    assert cfg.hydra.launcher.n_jobs == 2
    with pytest.raises(UsageError, match=r"keys exist once one is chosen, e\.g\. hydra/launcher="):
        compose("train", ["hydra.launcher.n_jobs=2"], with_hydra=True)
    with pytest.raises(UsageError, match=r"did you mean hydra\.launcher\.n_jobs"):
        compose("train", ["hydra/launcher=joblib", "hydra.launcher.n_job=2"], with_hydra=True)


def test_an_interval_needs_a_search_sweeper():
    with pytest.raises(UsageError, match="an interval is a search space"):
        validate("train", ["optim.lr=interval(0.01, 0.1)"], multirun=True)


def test_a_sweepers_search_space_is_checked_as_overrides():
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": {"optim.lr": "0.1,0.01", "x": "1"}}}})
    assert sweeper_params(cfg, ["x=2"]) == ["optim.lr=0.1,0.01"]  # the command line's x wins
    assert sweeper_params(OmegaConf.create({"hydra": {"sweeper": {"params": None}}}), []) == []


def _has_optuna() -> bool:
    from importlib.util import find_spec

    return find_spec("hydra_plugins.hydra_optuna_sweeper") is not None


@pytest.mark.skipif(_has_optuna(), reason="the Optuna sweeper is installed here")
def test_the_optuna_preset_without_its_extra_says_what_to_install():
    with pytest.raises(UsageError, match=r"pip install 'cnnlab\[optuna\]'"):
        compose("train", ["hparams_search=optuna"], with_hydra=True)


@pytest.mark.skipif(not _has_optuna(), reason="needs the optuna extra: pip install -e '.[optuna]'")
def test_optuna_search_maximises_validation_accuracy(tmp_path):
    cfg = compose("train", ["hparams_search=optuna"], with_hydra=True)
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"optim.lr", "optim.weight_decay"}
    with pytest.raises(UsageError, match=r"did you mean optim\.lr"):
        validate("train", ["hparams_search=optuna", "optim.lrr=interval(0.01, 0.1)"], True)
    result = run_cnnlab(
        "train", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sweep = sweep_dir(tmp_path)
    rows = read_csv(sweep / "sweep.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert all("optim.lr=" in r["overrides"] for r in rows)
    best = (sweep / "optimization_results.yaml").read_text()
    assert f"best_value: {max(float(r['val_acc']) for r in rows)}" in best
