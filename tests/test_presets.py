"""The experiment presets (``experiment=<name>``) and the debug presets (``debug=<name>``): each
composes with the values it promises, each CIFAR preset takes real training steps on small
CIFAR-format files, and ``debug=fdr`` smoke-tests three kinds of model on two backends.

Runs train in this process (:func:`train_here`), so that the fake CIFAR files, whose checksums
are not the official ones, are accepted, and so that torch and the data are imported once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnlab.config import compose, group_options
from cnnlab.data import cifar
from cnnlab.errors import UsageError
from tests.data.conftest import cifar_pickle, write_cifar_folder

EXPERIMENTS = [
    "asu_lab4",
    "cs231n_threelayer",
    "eecs498_kaiming",
    "lenet_mnist",
    "resnet18_cifar10",
]
DEBUGS = ["fdr", "limit", "overfit"]


def test_the_preset_groups_hold_exactly_these_options():
    assert group_options("experiment") == EXPERIMENTS
    assert group_options("debug") == DEBUGS


# -- composition -----------------------------------------------------------------------------


def test_asu_lab4_composes():
    cfg = compose("train", ["experiment=asu_lab4"])
    assert (cfg.data.name, cfg.data.random_classes, cfg.data.num_classes) == ("cifar100", 3, 3)
    assert cfg.data.augment is False
    assert (cfg.model.name, list(cfg.model.filters), list(cfg.model.pool_after)) == (
        "deep",
        [16, 32],
        [0, 1],
    )
    assert (cfg.model.num_classes, cfg.model.pool_ties, cfg.norm.name) == (3, "all", "none")
    assert cfg.init.name == "glorot"
    assert (cfg.optim.name, cfg.optim.lr) == ("sgd", 0.1)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (128, 15)


def test_cs231n_threelayer_composes():
    cfg = compose("train", ["experiment=cs231n_threelayer"])
    assert (cfg.data.name, cfg.data.val_fraction, cfg.data.augment) == ("cifar10", 0.02, False)
    assert (cfg.model.name, cfg.model.filters, cfg.model.kernel, cfg.model.hidden) == (
        "threelayer",
        32,
        7,
        500,
    )
    assert (cfg.init.name, cfg.init.std) == ("normal", 1e-3)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 1e-3, 1e-3)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (50, 1)


def test_eecs498_kaiming_composes():
    cfg = compose("train", ["experiment=eecs498_kaiming"])
    assert list(cfg.model.filters) == [8] * 10 + [32] * 10 + [128] * 10
    assert (cfg.model.name, list(cfg.model.pool_after), cfg.norm.name) == ("deep", [9, 19], "none")
    assert (cfg.data.name, cfg.data.limit, cfg.data.val_fraction) == ("cifar10", 10000, 0.2)
    assert cfg.init.name == "kaiming"
    optim = cfg.optim
    assert (optim.name, optim.lr, optim.momentum, optim.schedule, optim.warmup_steps) == (
        "momentum",
        2e-3,
        0.9,
        "none",
        0,
    )
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (128, 1)


def test_the_eecs498_sweep_sets_a_whole_init_node_per_job():
    # The preset's documented sweep: each value replaces the init node's keys it names.
    for value, expected in [
        ("{name:kaiming}", ("kaiming", None)),
        ("{name:normal,std:1e-1}", ("normal", 0.1)),
        ("{name:normal,std:1e-3}", ("normal", 1e-3)),
    ]:
        init = compose("train", ["experiment=eecs498_kaiming", f"init={value}"]).init
        assert (init.name, init.std) == expected


def test_lenet_mnist_composes():
    cfg = compose("train", ["experiment=lenet_mnist"])
    assert (cfg.model.name, cfg.data.name, cfg.trainer.epochs) == ("lenet", "mnist", 10)


def test_resnet18_cifar10_composes():
    cfg = compose("train", ["experiment=resnet18_cifar10"])
    assert (cfg.backend.name, cfg.model.name, cfg.norm.name) == ("cuda", "resnet18", "batch")
    assert (cfg.data.name, cfg.data.augment, cfg.data.crop_pad, cfg.data.flip) == (
        "cifar10",
        True,
        4,
        True,
    )
    optim = cfg.optim
    assert (optim.name, optim.lr, optim.momentum, optim.weight_decay, optim.schedule) == (
        "momentum",
        0.1,
        0.9,
        5e-4,
        "cosine",
    )
    assert (optim.warmup_steps, cfg.trainer.batch_size, cfg.trainer.epochs) == (0, 128, 200)


# eecs498_kaiming sets data.limit itself: the debug preset, later in the defaults, wins.
@pytest.mark.parametrize("experiment", [None, "eecs498_kaiming"])
def test_fdr_shrinks_any_run_to_one_batch_per_split_without_checkpoints(experiment):
    chosen = [] if experiment is None else [f"experiment={experiment}"]
    cfg = compose("train", [*chosen, "debug=fdr"])
    batch = cfg.trainer.batch_size
    assert batch == (64 if experiment is None else 128)
    assert cfg.data.limit == cfg.trainer.eval_batch_size == batch
    assert (cfg.trainer.epochs, cfg.trainer.max_steps, cfg.trainer.checkpoints) == (1, 1, False)


def test_fdr_follows_the_batch_size_given_with_it():
    cfg = compose("train", ["debug=fdr", "trainer.batch_size=16"])
    assert cfg.data.limit == cfg.trainer.eval_batch_size == 16


@pytest.mark.parametrize("experiment", [None, "resnet18_cifar10"])
def test_overfit_and_limit_compose_with_any_run(experiment):
    chosen = [] if experiment is None else [f"experiment={experiment}"]
    overfit = compose("train", [*chosen, "debug=overfit"])
    assert (overfit.data.limit, overfit.data.augment) == (50, False)
    assert (overfit.trainer.batch_size, overfit.trainer.epochs) == (10, 40)
    limit = compose("train", [*chosen, "debug=limit"])
    assert (limit.data.limit, limit.trainer.epochs) == (500, 3)
    # What the debug preset does not set stays the experiment's.
    if experiment is not None:
        assert overfit.optim.lr == limit.optim.lr == 0.1


def test_a_misspelt_key_next_to_a_preset_is_an_error():
    with pytest.raises(UsageError, match=r"did you mean data\.random_classes"):
        compose("train", ["experiment=asu_lab4", "data.random_clases=4"])


# -- training on small CIFAR-format files -----------------------------------------------------


def write_cifar(root: Path, name: str, n_train: int, n_test: int) -> Path:
    """A small CIFAR-10 or CIFAR-100 in the python-version layout under ``root``, random
    images with labels that cycle through every class, so that any class subset has images."""
    spec = cifar.SETS[name]
    rng = np.random.default_rng(0)
    sizes = [(m, n_train // len(spec.train)) for m in spec.train] + [(spec.test, n_test)]
    files = {}
    for member, n in sizes:
        batch = {
            spec.label_key: [i % spec.num_classes for i in range(n)],
            b"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
        }
        files[member] = cifar_pickle(batch)
    names = [f"class_{k}".encode() for k in range(spec.num_classes)]
    files[spec.meta] = cifar_pickle({spec.names_key: names})
    write_cifar_folder(root, name, files)
    return root


@pytest.fixture
def cifar_files(tmp_path, monkeypatch) -> Path:
    """A folder holding small CIFAR-10 and CIFAR-100 files; their checksums are not the
    official ones, so they are treated as unknown."""
    for name, spec in cifar.SETS.items():
        monkeypatch.setitem(
            cifar.SETS, name, dataclasses.replace(spec, archive_md5=None, file_md5={})
        )
    root = tmp_path / "cifar"
    write_cifar(root, "cifar10", n_train=100, n_test=20)
    write_cifar(root, "cifar100", n_train=400, n_test=100)
    return root


def train_here(run_dir: Path, overrides: list[str]) -> dict:
    """``cnnlab train <overrides>`` in this process, its outputs in ``run_dir``; returns its
    results.json."""
    from cnnlab.commands.train import Job, check_config, train
    from cnnlab.train.distributed import SINGLE

    cfg = compose("train", [*overrides, "trainer.threads=1"])
    check_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    run_dir.mkdir(parents=True)
    outcome = train(Job(config, str(run_dir), None, time.perf_counter()), SINGLE)
    assert outcome.code == 0
    return json.loads((run_dir / "results.json").read_text())


# Each preset shrunk to two steps: its data, init, optimizer and layer pattern as they are,
# widths and batches smaller where a full one would take long (asu_lab4: the test below).
CIFAR_RUNS = {
    "cs231n_threelayer": ["model.filters=8", "model.hidden=32"],
    "eecs498_kaiming": [
        "model.filters=[2,2,2,2,2,2,2,2,2,2,4,4,4,4,4,4,4,4,4,4,8,8,8,8,8,8,8,8,8,8]",
        "trainer.batch_size=16",
    ],
    "resnet18_cifar10": ["backend=torch", "model.widths=[4,8,8,16]", "trainer.batch_size=16"],
}


@pytest.mark.parametrize("experiment", list(CIFAR_RUNS))
def test_each_cifar_preset_takes_training_steps(tmp_path, cifar_files, experiment):
    results = train_here(
        tmp_path / "run",
        [
            f"experiment={experiment}",
            f"data.root={cifar_files}",
            *CIFAR_RUNS[experiment],
            "trainer.max_steps=2",
        ],
    )
    assert results["status"] == "completed" and results["steps"] == 2
    assert results["train_loss"] is not None and np.isfinite(results["train_loss"])
    assert results["test_acc"] is not None


def test_asu_lab4_trains_on_the_three_classes_drawn_from_the_seed(tmp_path, cifar_files):
    from cnnlab.data import chosen_classes

    overrides = ["experiment=asu_lab4", f"data.root={cifar_files}"]
    run = tmp_path / "run"
    results = train_here(run, [*overrides, "trainer.batch_size=4", "trainer.max_steps=3"])
    assert results["status"] == "completed" and results["steps"] == 3
    drawn = chosen_classes(compose("train", overrides).data, seed=0)
    assert results["classes"] == [f"class_{k}" for k in drawn] and len(drawn) == 3
    # What the lab looks at: the loss curves per epoch and the first layer's filters.
    assert (run / "history.png").is_file() and (run / "filters.png").is_file()


# -- debug=fdr on three kinds of model --------------------------------------------------------

# Reduced widths: each model's layer pattern at a fraction of its cost.
MODELS = {
    "lenet": ["model=lenet"],
    "alexnet_lite": ["model=alexnet_lite", "model.filters=[8,16,16,16,16]", "model.hidden=[32,32]"],
    "resnet18": ["model=resnet18", "model.widths=[4,8,8,16]"],
}


@pytest.mark.parametrize("backend", ["im2col", "torch"])
@pytest.mark.parametrize("model", list(MODELS))
def test_fdr_runs_one_batch_of_each_split_and_keeps_no_checkpoint(tmp_path, model, backend):
    run = tmp_path / "run"
    results = train_here(
        run,
        [
            "debug=fdr",
            f"backend={backend}",
            *MODELS[model],
            "data.train_size=200",
            "data.test_size=100",
            "trainer.batch_size=32",
        ],
    )
    assert results["steps"] == 1 and results["epochs"] == 1
    assert np.sum(results["confusion"]) == 32  # one test batch
    assert not (run / "checkpoints").exists()
    assert (run / "history.png").is_file() and (run / "filters.png").is_file()
