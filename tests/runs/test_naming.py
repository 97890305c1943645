"""Run names: the rule of cnnlab.runs.naming.run_name, and the name a run directory keeps."""

from __future__ import annotations

import json

import pytest

from cnnlab.runs.naming import run_name, stored_name
from tests.runs.fake import fake_run


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ([], "resnet18-torch"),
        (["optim=adam", "optim.lr=0.01"], "resnet18-torch-optim=adam-lr=0.01"),
        # model= and backend= are the name's start; Hydra's keys and bookkeeping are noise.
        (
            [
                "model=resnet18",
                "backend=torch",
                "hydra.run.dir=x",
                "hydra/launcher=joblib",
                "trainer.resume=outputs/a",
                "trainer.overwrite=true",
                "data.root=/data/cifar10",
                "trainer.log_every=10",
                "trainer.threads=4",
            ],
            "resnet18-torch",
        ),
        # The same last part twice: both keep their full keys; prefixes and blanks dropped.
        (
            ["+model.widths=[8, 16]", "data.widths=3", "++trainer.epochs=2"],
            "resnet18-torch-model.widths=[8,16]-data.widths=3-epochs=2",
        ),
        (["~trainer.max_steps", "optim.betas='[0.9,0.99]'"], "resnet18-torch-betas=[0.9,0.99]"),
    ],
)
def test_a_name_is_model_backend_and_the_overrides_that_say_what_ran(overrides, name):
    assert run_name("resnet18", "torch", overrides) == name


def test_a_run_directory_keeps_the_name_it_recorded_first(tmp_path):
    run = fake_run(
        tmp_path / "a",
        overrides=["optim.lr=0.1"],
        run={"name": "from-run-json"},
        results={"name": "from-results"},
    )
    assert stored_name(run) == "from-run-json"
    (run / "run.json").unlink()
    assert stored_name(run) == "from-results"
    (run / "results.json").write_text(json.dumps({"status": "completed"}))
    # A run from before names: the rule applied to its .hydra record.
    assert stored_name(run) == "threelayer-im2col-lr=0.1"


def test_a_folder_that_holds_no_run_has_no_name(tmp_path):
    assert stored_name(tmp_path) is None


def test_train_names_a_new_run_by_the_rule_and_a_resumed_one_by_its_first_name(tmp_path):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from cnnlab.commands.train import Plan, _run_name

    cfg = OmegaConf.create({"model": {"name": "lenet"}, "backend": {"name": "torch"}})
    first = fake_run(tmp_path / "first", run={"name": "lenet-torch-lr=0.1"})
    assert _run_name(cfg, Plan(None)) == "lenet-torch"  # outside Hydra: no overrides
    checkpoint = SimpleNamespace(meta={"run_dir": str(first)})
    assert _run_name(cfg, Plan(None, checkpoint, run_dir=first)) == "lenet-torch-lr=0.1"
    # A loose checkpoint: the name of the run that saved it, while that run is still there.
    assert _run_name(cfg, Plan(None, checkpoint)) == "lenet-torch-lr=0.1"
    gone = SimpleNamespace(meta={"run_dir": str(tmp_path / "gone")})
    assert _run_name(cfg, Plan(None, gone)) == "lenet-torch"
