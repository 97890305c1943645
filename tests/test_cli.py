"""The command line: help, one-line errors with exit code 2, run directories, sweeps."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.cli import run_cnnlab

cnnlab = run_cnnlab


def test_help_lists_commands_and_groups_without_heavy_imports(tmp_path):
    code = (
        "import sys\n"
        "from cnnlab.cli import main\n"
        "sys.argv = ['cnnlab', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('numpy', 'torch', 'hydra', 'tensorboard') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "gradcheck" in out
    assert "layer" in out and "batchnorm" in out  # config groups and options
    assert "HEAVY []" in out


def test_command_help_lists_its_groups(tmp_path):
    result = cnnlab("gradcheck", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "layer" in result.stdout and "maxpool" in result.stdout
    assert "backends" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backends=[foo]"], "unknown backend 'foo'; choose from naive, im2col, torch, cuda, user"),
        (["layer=nosuch"], "layer=nosuch: no such option; choose from adaptive_avgpool, all"),
        (["gradcheck.stpe=1e-6"], "did you mean gradcheck.step"),
        (["gradcheck.step=abc"], "gradcheck.step: 'abc' is not a valid Float"),
        (["trainer.threads=two"], "trainer.threads: 'two' is not a valid Integer"),
        (
            ["model=resnet19"],
            "model=resnet19: no such option; choose from alexnet_lite, asu_lab4, deep",
        ),
        (["norm=batch"], "norm= fills a model's norm slots: give model= too"),
        (["layer=conv,maxpool"], "sweep them with -m"),
        (["-m", "layer=conv,nosuch"], "layer=nosuch: no such option"),
        (["-m", "backends=[naive],[foo]"], "unknown backend 'foo'"),
        (["gradcheck.step=-1"], "gradcheck.step must be > 0"),
        (["nonsense"], "could not parse override 'nonsense'"),
        (["-m", "hydra.launcher.n_jobs=2"], "hydra/launcher keys exist once one is chosen"),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.n_job=2"], "did you mean"),
        (["trainer.winograd=maybe"], "trainer.winograd: 'maybe' is not a valid Boolean"),
        (["layer=[a,b"], "could not parse override 'layer=[a,b'"),
        (["init=he"], "init=he: no such option; choose from glorot, kaiming, normal, xavier"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, expected):
    assert_one_line_exit_2(cnnlab("gradcheck", *args, cwd=tmp_path), expected, tmp_path)


def assert_one_line_exit_2(result, expected, tmp_path):
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "outputs").exists()  # caught before anything ran


def test_cfg_job_prints_config_without_running(tmp_path):
    result = cnnlab("gradcheck", "layer=conv", "backends=[naive]", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: conv" in result.stdout
    assert "- naive" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_run_writes_records_config_and_log_in_a_subsecond_run_dir(tmp_path):
    result = cnnlab("gradcheck", "layer=relu", "backends=[im2col,cuda]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}\.\d{6}", run_dir.name)
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "checks, all passed" in (run_dir / "gradcheck.log").read_text()
    records = json.loads((run_dir / "gradcheck.json").read_text())
    ran = [r for r in records if not r["skipped"]]
    assert {r["reference"] for r in ran} == {"numeric", "torch"}
    assert all(r["target"] == "layer" and r["layer"] == "relu" for r in records)
    assert all(r["passed"] and r["rel_error"] < 1e-8 for r in ran)
    cuda = [r for r in records if r["backend"] == "cuda"]
    if cuda and cuda[0]["skipped"]:
        assert "cuda skipped" in result.stdout


def test_failed_check_exits_1(tmp_path):
    # A threshold no centred difference can meet: the check must fail, not pass vacuously.
    result = cnnlab(
        "gradcheck",
        "layer=linear",
        "backends=[naive]",
        "gradcheck.rtol_numeric=1e-30",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr


def test_multirun_runs_one_job_per_combination(tmp_path):
    result = cnnlab(
        "gradcheck", "-m", "layer=relu,flatten", "backends=[naive],[im2col]", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = sorted((tmp_path / "multirun").glob("*/*/*/gradcheck.json"))
    assert len(jobs) == 4
    seen = set()
    for path in jobs:
        records = json.loads(path.read_text())
        seen.add((records[0]["layer"], records[0]["backend"]))
    assert seen == {
        ("relu", "naive"),
        ("relu", "im2col"),
        ("flatten", "naive"),
        ("flatten", "im2col"),
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backend=tpu"], "backend=tpu: no such option; choose from cuda, im2col, naive, torch"),
        (["norm=bogus"], "norm=bogus: no such option; choose from batch, group, layer, lrn, none"),
        (
            ["model=vgg"],
            "model=vgg: no such option; choose from alexnet_lite, asu_lab4, deep, densenet121",
        ),
        (["optim.lr=fast"], "optim.lr: 'fast' is not a valid Float"),
        (["trainer.epoch=3"], "trainer.epoch: no such key in the train config; did you mean"),
        (
            ["trainer.precision=float16"],
            "trainer.precision: 'float16' is not an option; choose from 32-true, 64-true, "
            "bf16-mixed, 16-mixed",
        ),
        (
            ["trainer.dtype=float64"],
            "trainer.dtype is now trainer.precision: write trainer.precision=64-true",
        ),
        (
            ["+trainer.dtype=float32"],
            "trainer.dtype is now trainer.precision: write trainer.precision=32-true",
        ),
        (
            ["trainer.precision=bf16-mixed"],
            "backend=im2col: trainer.precision=bf16-mixed needs a torch backend",
        ),
        (
            ["backend=torch", "trainer.precision=16-mixed"],
            "backend=torch: trainer.precision=16-mixed runs on CUDA only; on the CPU use "
            "trainer.precision=bf16-mixed",
        ),
        (
            ["backend=naive", "trainer.channels_last=true", "trainer.rng=device"],
            "backend=naive: trainer.channels_last=true, trainer.rng=device need a torch backend",
        ),
        (["trainer.rng=cpu"], "trainer.rng: 'cpu' is not an option; choose from numpy, device"),
        (["optim.schedule=linear"], "'linear' is not an option; choose from none, step, cosine"),
        (["backend.name=tpu"], "backend.name: 'tpu' is not an option; choose from naive, im2col"),
        (["model=resnet18", "model.stem=x"], "model.stem: 'x' is not an option; choose from cifar"),
        (["model=resnet18", "norm.backward=x"], "'x' is not an option; choose from staged, fused"),
        (["trainer.threads=0"], "trainer.threads must be >= 1, got 0"),
        (["act=nosuch"], "act=nosuch: no such option; choose from elu, gelu, leaky_relu, relu"),
        (["model=lenet", "model.filters=[6]"], "model.filters must hold 2 values, got [6]"),
        (["optim=adam", "optim.betas=[0.9,1.5]"], "optim.betas must hold values in [0, 1)"),
    ],
)
def test_train_mistakes_are_one_line_and_exit_2(tmp_path, args, expected):
    assert_one_line_exit_2(cnnlab("train", *args, cwd=tmp_path), expected, tmp_path)


@pytest.mark.parametrize("command", ["train", "gradcheck", "summary", "bench"])
def test_help_shows_the_defaults_the_config_chooses(tmp_path, command):
    from cnnlab.config import group_defaults

    out = " ".join(cnnlab(command, "--help", cwd=tmp_path).stdout.split())
    for group, option in group_defaults(command).items():
        if group != "trainer":
            assert f"{group}: " in out and f"(default: {option or 'none'}" in out, group
