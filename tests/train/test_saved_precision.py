"""Runs saved before ``trainer.precision``, whose configs say ``trainer.dtype: float32|float64``,
still evaluate and resume, in the precision their dtype means; eval keeps a run's precision."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnlab.errors import RunError
from cnnlab.train.checkpoint import model_of, read, upgraded
from tests.cli import run_cnnlab
from tests.train.test_runs import one_line
from tests.train.test_train_cli import SMALL

TODAY = ("channels_last", "compile", "rng")  # trainer keys an older run's config lacks


@pytest.fixture(scope="module")
def float64_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 64-true run of 3 steps; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("float64")
    args = [*SMALL, "trainer.precision=64-true", "trainer.max_steps=3", "hydra.run.dir=run"]
    result = run_cnnlab("train", *args, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "run"


def rewritten(
    run: Path, where: Path, edit: Callable[[dict], None], cast: np.dtype | None = None
) -> Path:
    """A copy of ``run`` whose saved configs (``.hydra/config.yaml`` and each checkpoint's) are
    changed by ``edit`` (on the trainer node), and whose floating arrays are cast to ``cast``."""
    shutil.copytree(run, where)
    record = where / ".hydra" / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(record))
    edit(config["trainer"])
    record.write_text(OmegaConf.to_yaml(config))
    for path in (where / "checkpoints").glob("*.npz"):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(arrays["__meta__"].tobytes())
        config = OmegaConf.to_container(OmegaConf.create(meta["config"]))
        edit(config["trainer"])
        meta["config"] = OmegaConf.to_yaml(config)
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        if cast is not None:
            arrays = {
                k: v.astype(cast) if k != "__meta__" and v.dtype.kind == "f" else v
                for k, v in arrays.items()
            }
        with path.open("wb") as f:
            np.savez(f, **arrays)
    return where


def as_dtype(value: str) -> Callable[[dict], None]:
    """The trainer node as runs saved it before trainer.precision: dtype, and none of today's
    torch switches."""

    def edit(trainer: dict) -> None:
        del trainer["precision"]
        for key in TODAY:
            del trainer[key]
        trainer["dtype"] = value

    return edit


def evaluated(run: Path, cwd: Path, *args: str) -> dict:
    result = run_cnnlab("eval", f"checkpoint={run}", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = (cwd / "outputs").glob("*/*/eval.json")
    record = json.loads(out.read_text())
    shutil.rmtree(cwd / "outputs")
    return record


def test_an_old_float64_run_evaluates_as_64_true_with_the_same_accuracy(tmp_path, float64_run):
    old = rewritten(float64_run, tmp_path / "old", as_dtype("float64"))
    assert "dtype: float64" in (old / ".hydra" / "config.yaml").read_text()
    now = evaluated(float64_run, tmp_path)
    then = evaluated(old, tmp_path)
    assert then["precision"] == now["precision"] == "64-true"
    assert (then["acc"], then["loss"], then["confusion"]) == (
        now["acc"],
        now["loss"],
        now["confusion"],
    )


def test_an_old_run_resumes_and_saves_its_config_in_today_s_keys(tmp_path, float64_run):
    old = rewritten(float64_run, tmp_path / "old", as_dtype("float64"))
    result = run_cnnlab("train", f"trainer.resume={old}", "trainer.max_steps=5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((old / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 5
    assert results["precision"] == "64-true"
    with np.load(old / "checkpoints" / "last.npz", allow_pickle=False) as data:
        meta = json.loads(data["__meta__"].tobytes())
        assert data["param/conv1.w"].dtype == np.float64
    trainer = OmegaConf.create(meta["config"]).trainer
    assert "dtype" not in trainer and trainer.precision == "64-true"
    assert (trainer.channels_last, trainer.compile, trainer.rng) == (False, False, "numpy")


def test_eval_keeps_the_run_s_precision_and_refuses_another(tmp_path, float64_run):
    result = run_cnnlab(
        "eval", f"checkpoint={float64_run}", "trainer.precision=32-true", cwd=tmp_path
    )
    one_line(
        result,
        2,
        "trainer.precision=32-true: eval runs a checkpoint in the precision its run trained "
        "in, 64-true",
    )
    assert not (tmp_path / "outputs").exists()


def test_a_mixed_run_evaluates_on_torch_and_is_refused_on_numpy(tmp_path, float64_run):
    def mixed(trainer: dict) -> None:
        trainer["precision"] = "bf16-mixed"

    run = rewritten(float64_run, tmp_path / "mixed", mixed, cast=np.dtype(np.float32))
    refused = run_cnnlab("eval", f"checkpoint={run}", "backend=im2col", cwd=tmp_path)
    one_line(
        refused,
        2,
        "backend=im2col: trainer.precision=bf16-mixed needs a torch backend (numpy has no "
        "autocast); the run trained in bf16-mixed, and eval keeps its precision",
    )
    assert not (tmp_path / "outputs").exists()
    on_torch = evaluated(run, tmp_path, "backend=torch")
    exact = evaluated(float64_run, tmp_path)
    assert on_torch["precision"] == "bf16-mixed" and on_torch["backend"] == "torch"
    # bfloat16 convs round at about 4e-3: the loss moves little, the predictions hardly.
    assert on_torch["loss"] == pytest.approx(exact["loss"], rel=5e-2)
    assert abs(on_torch["acc"] - exact["acc"]) <= 0.02


@pytest.mark.parametrize(("dtype", "precision"), [("float32", "32-true"), ("float64", "64-true")])
def test_a_saved_config_is_upgraded_to_today_s_keys(dtype, precision):
    saved = OmegaConf.create({"trainer": {"seed": 0, "dtype": dtype}, "model": {"name": "x"}})
    config = upgraded(saved, Path("run/checkpoints/last.npz"))
    assert OmegaConf.to_container(config.trainer) == {
        "seed": 0,
        "precision": precision,
        "channels_last": False,
        "compile": False,
        "rng": "numpy",
    }
    today = OmegaConf.create({"trainer": {"precision": "bf16-mixed", "rng": "device"}})
    assert upgraded(today, Path("x.npz")).trainer.rng == "device"  # what is there stays


def test_a_saved_dtype_that_never_was_one_is_one_line_naming_the_file():
    saved = OmegaConf.create({"trainer": {"dtype": "float16"}})
    with pytest.raises(RunError, match=r"^old\.npz: its config's trainer\.dtype=float16 is not"):
        upgraded(saved, Path("old.npz"))


def test_a_16_mixed_run_keeps_its_loss_scaler_in_its_checkpoint(tmp_path, float64_run):
    def half(trainer: dict) -> None:
        trainer["precision"] = "16-mixed"

    run = rewritten(float64_run, tmp_path / "half", half, cast=np.dtype(np.float32))
    checkpoint = read(run, "checkpoint")
    scaled = replace(checkpoint, state={**checkpoint.state, "scaler/scale": np.array(65536.0)})
    model_of(scaled, scaled.config)  # the scaler's state belongs to a 16-mixed run
    other = scaled.config
    other.trainer.precision = "32-true"
    with pytest.raises(RunError, match="scaler/scale unexpected"):
        model_of(scaled, other)
