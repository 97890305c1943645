"""Transfer learning: ``trainer.init_from``, ``trainer.freeze`` and ``trainer.reinit``.

What a checkpoint gives a new run (by name and shape), that frozen parameters stay bit for bit
on naive, im2col and torch (weight decay included) while the others train, that im2col and
torch fine-tunes agree in float64, that either engine's checkpoint starts the other's
fine-tune, the one-line mistakes, and end to end: an im2col checkpoint fine-tuned on torch and
resumed with its parameters still frozen. The MNIST digits demo of the README is the slow test
at the end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnnlab.backends import BackendOptions, get_backend
from cnnlab.config import compose
from cnnlab.errors import UsageError
from cnnlab.models import INIT_STREAM, instantiate
from cnnlab.train.checkpoint import Checkpoint, save
from cnnlab.train.engine import make_engine
from cnnlab.train.transfer import listing, matches, plan, selected, start
from tests.cli import run_cnnlab

# A narrow three-layer net with batch norm on 12x12 images: the naive loops take it in ms.
NET = ["model.filters=4", "model.hidden=8", "norm=batch"]
IN_SHAPE = (3, 12, 12)
FROZEN = ["conv1", "norm1"]


def _instance(overrides: list[str], seed: int = 0, dtype: type = np.float64):
    cfg = compose("train", [*NET, *overrides])
    rng = np.random.default_rng([seed, INIT_STREAM])
    model = instantiate(cfg.model, cfg.norm, cfg.init, IN_SHAPE, rng, dtype, act=cfg.act)
    return cfg, model


def _checkpoint(state: dict[str, np.ndarray], path: str = "src.npz") -> Checkpoint:
    return Checkpoint(Path(path), state, {"loop": {}, "config": ""})


def _state_of(model) -> dict[str, np.ndarray]:
    state = {f"param/{k}": v.copy() for k, v in model.params.items()}
    return state | {f"buffer/{k}": v.copy() for k, v in model.buffers.items()}


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [
        ("conv1", "conv1.w", True),
        ("conv1", "conv10.w", False),  # at the dots, not any prefix
        ("conv1.w", "conv1.w", True),
        ("conv1.w", "conv1.b", False),
        ("conv*", "conv10.w", True),
        ("conv*", "fc1.w", False),
        ("layer1.0", "layer1.0.block.conv1.w", True),
        ("layer1.0", "layer1.1.block.conv1.w", False),
        ("*norm1", "layer1.0.block.norm1.gamma", True),
        ("fc", "fc1.w", False),
    ],
)
def test_a_pattern_names_a_parameter_or_a_module_at_the_dots(pattern, name, hit):
    assert matches(pattern, name) is hit


def test_long_listings_are_grouped_by_module():
    names = [f"layer{i}.{j}.w" for i in range(1, 4) for j in range(5)] + ["fc.w", "fc.b"]
    assert listing(names) == "17 in all, by module: layer1 (5), layer2 (5), layer3 (5), fc (2)"
    assert listing(["a.w", "a.b"]) == "a.w, a.b"


def test_plan_lists_loaded_skipped_and_reinitialised_with_reasons():
    state = {
        "param/conv1.w": np.zeros((4, 3, 7, 7)),
        "param/fc2.w": np.zeros((6, 8)),  # another class count
        "param/extra.w": np.zeros(3),  # not in the model
        "buffer/norm1.running_mean": np.zeros(4),
        "optim/conv1.w/momentum_buffer": np.zeros((4, 3, 7, 7)),
        "optim/step": np.array(3),
    }
    shapes = {
        "param/conv1.w": (4, 3, 7, 7),
        "param/fc1.w": (8, 144),
        "param/fc2.w": (4, 8),
        "buffer/norm1.running_mean": (4,),
    }
    moved = plan(state, shapes, ["norm1"], Path("src.npz"))
    assert moved.loaded == ("conv1.w",)
    assert moved.skipped == ("extra.w",)  # optimizer state is not a weight
    assert moved.reinitialised == {
        "fc1.w": "not in the checkpoint",
        "fc2.w": "shape [4, 8] here, [6, 8] in the checkpoint",
        "norm1.running_mean": "trainer.reinit",
    }
    assert moved.record() == {
        "path": "src.npz",
        "loaded": ["conv1.w"],
        "skipped": ["extra.w"],
        "reinitialised": ["fc1.w", "fc2.w", "norm1.running_mean"],
    }


def test_init_from_loads_weights_and_keeps_the_runs_own_draws_elsewhere():
    """A 6-class source into a 3-class run: the head keeps the new run's draw, a reinit-ed
    layer the very values a fresh run of the same seed starts from; float64 into float32."""
    _, source = _instance(["data.num_classes=6"], seed=7)
    for v in (*source.params.values(), *source.buffers.values()):
        v += 0.25  # distinguishable from any fresh draw
    cfg, model = _instance(
        [
            "data.num_classes=3",
            "trainer.init_from=src.npz",
            "trainer.reinit=[fc1]",
            "trainer.freeze=[conv1]",
        ],
        dtype=np.float32,
    )
    _, fresh = _instance(["data.num_classes=3"], dtype=np.float32)
    frozen, record = start(cfg.trainer, model, _checkpoint(_state_of(source)), resuming=False)
    assert frozen == {"conv1.w"}  # the conv has no bias before batch norm
    assert record["loaded"] == [
        "conv1.w",
        "norm1.gamma",
        "norm1.beta",
        "norm1.running_mean",
        "norm1.running_var",
    ]
    assert record["reinitialised"] == ["fc1.w", "fc1.b", "fc2.w", "fc2.b"]
    assert record["skipped"] == []
    for name in ("conv1.w", "norm1.gamma"):
        assert model.params[name].dtype == np.float32
        np.testing.assert_array_equal(model.params[name], source.params[name].astype(np.float32))
    np.testing.assert_array_equal(model.buffers["norm1.running_var"], 1.25)
    for name in record["reinitialised"]:
        np.testing.assert_array_equal(model.params[name], fresh.params[name])


def test_a_resumed_run_loads_nothing_from_its_source():
    _, source = _instance([])
    cfg, model = _instance(["trainer.init_from=src.npz"], seed=1)
    before = {k: v.copy() for k, v in model.params.items()}
    _, record = start(cfg.trainer, model, _checkpoint(_state_of(source)), resuming=True)
    assert len(record["loaded"]) == len(model.params) + len(model.buffers)
    assert all(np.array_equal(model.params[k], before[k]) for k in before)


# -- freezing on every backend -------------------------------------------------------------------


def _steps(backend: str, optim: list[str], frozen: list[str], steps: int = 3) -> tuple:
    """(initial params, params after ``steps`` steps, optimizer state keys, grads) of a net
    trained on fixed random batches (float64)."""
    cfg, model = _instance(optim)
    initial = {k: v.copy() for k, v in model.params.items()}
    names = frozenset(selected(frozen, model.params))
    engine = make_engine(
        get_backend(backend), model, cfg.optim, options=BackendOptions(threads=1), frozen=names
    )
    data = np.random.default_rng(3)
    for _ in range(steps):
        x = data.standard_normal((8, *IN_SHAPE))
        y = data.integers(0, 6, 8)
        engine.train_step(x, y, 0.05, np.random.default_rng(0))
    optim_keys = {k for k in engine.state() if k.startswith("optim/") and k != "optim/step"}
    return initial, engine.params(), optim_keys, engine.grads(), engine.state()


@pytest.mark.parametrize("backend", ["naive", "im2col", "torch"])
@pytest.mark.parametrize("optim", ["momentum", "adamw"])
def test_frozen_parameters_stay_bit_for_bit_weight_decay_included(backend, optim):
    # A weight decay large enough to move any parameter it touched.
    overrides = [f"optim={optim}", "optim.weight_decay=0.5"]
    initial, after, optim_keys, grads, state = _steps(backend, overrides, FROZEN)
    frozen = {"conv1.w", "norm1.gamma", "norm1.beta"}
    for name, value in after.items():
        same = np.array_equal(value, initial[name])
        assert same is (name in frozen), name
    assert not any(k.split("/")[1] in frozen for k in optim_keys)  # no optimizer state
    assert frozen.isdisjoint(grads)
    # Batch norm's running statistics still follow the batches (torch's default).
    assert not np.array_equal(state["buffer/norm1.running_mean"], 0)


@pytest.mark.parametrize("optim", ["momentum", "adamw"])
def test_im2col_and_torch_fine_tunes_agree(optim):
    overrides = [f"optim={optim}", "optim.weight_decay=0.1"]
    _, numpy_after, *_ = _steps("im2col", overrides, ["conv1"])
    _, torch_after, *_ = _steps("torch", overrides, ["conv1"])
    for name, value in torch_after.items():
        got = numpy_after[name]
        rel = np.linalg.norm(got - value) / max(np.linalg.norm(got) + np.linalg.norm(value), 1e-12)
        assert rel <= 1e-10, (name, rel)


# -- mistakes, one line each ---------------------------------------------------------------------


def _check(overrides: list[str]):
    from cnnlab.commands.train import check_config

    return check_config(compose("train", ["model=lenet", *overrides]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.freeze=[conv3]"],
            "trainer.freeze: 'conv3' names none of the parameters of model=lenet, which are "
            "conv1.w, conv1.b, conv2.w,",
        ),
        (
            ["trainer.freeze=[conv*,fc*]"],
            "trainer.freeze=[conv*,fc*] freezes every parameter: nothing would train",
        ),
        (["trainer.reinit=[fc3]"], "trainer.reinit re-initialises weights that trainer.init_from"),
        (["trainer.init_from=nowhere"], "trainer.init_from: no checkpoint at nowhere"),
        (
            ["trainer.init_from=a", "trainer.resume=b"],
            "trainer.init_from starts a new run from a checkpoint's weights, trainer.resume",
        ),
    ],
)
def test_mistakes_are_one_usage_error(overrides, message):
    with pytest.raises(UsageError, match="^" + re.escape(message)):
        _check(overrides)


def test_a_checkpoint_that_shares_no_parameter_is_refused(tmp_path):
    save(tmp_path / "other.npz", {"param/head.w": np.zeros(3)}, {"loop": {}, "config": ""})
    with pytest.raises(UsageError, match="holds no parameter of model=lenet with the same name"):
        _check([f"trainer.init_from={tmp_path / 'other.npz'}"])


# -- end to end ----------------------------------------------------------------------------------

SMALL = [
    "data.train_size=120",
    "data.test_size=40",
    "model.filters=4",
    "model.hidden=16",
    "trainer.batch_size=20",
    "trainer.epochs=1",
    "trainer.threads=1",
]


def _weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k.startswith(("param/", "buffer/", "optim/"))}


@pytest.mark.parametrize(("trained", "tuned"), [("im2col", "torch"), ("torch", "naive")])
def test_either_engines_checkpoint_starts_a_fine_tune_on_the_other(trained, tuned):
    cfg, model = _instance([])
    engine = make_engine(get_backend(trained), model, cfg.optim, options=BackendOptions(threads=1))
    data = np.random.default_rng(3)
    engine.train_step(data.standard_normal((4, *IN_SHAPE)), np.arange(4), 0.05, None)
    state = engine.state()  # optim/ slots and step included
    target = ["data.num_classes=3", "trainer.init_from=src.npz", "trainer.freeze=[conv1]"]
    cfg, model = _instance(target, seed=1)
    frozen, record = start(cfg.trainer, model, _checkpoint(state), resuming=False)
    assert record["skipped"] == [] and record["reinitialised"] == ["fc2.w", "fc2.b"]
    fine = make_engine(get_backend(tuned), model, cfg.optim, frozen=frozen)
    params = fine.params()
    for name in record["loaded"]:
        if name in params:
            np.testing.assert_array_equal(params[name], state[f"param/{name}"])
    assert not any(k.startswith("optim/conv1.w/") for k in fine.state())


def _im2col_run(run: Path) -> None:
    """A run directory holding an im2col engine's checkpoint after one step on SMALL's net
    (made here: a subprocess would cost seconds)."""
    cfg = compose("train", SMALL)
    rng = np.random.default_rng([0, INIT_STREAM])
    shape = tuple(cfg.data.shape)
    model = instantiate(cfg.model, cfg.norm, cfg.init, shape, rng, np.float32, act=cfg.act)
    engine = make_engine(get_backend("im2col"), model, cfg.optim, options=BackendOptions(threads=1))
    data = np.random.default_rng(5)
    engine.train_step(data.standard_normal((4, *shape), np.float32), np.arange(4), 0.05, None)
    save(run / "checkpoints" / "last.npz", engine.state(), {"loop": {}, "config": ""})


def test_a_fine_tune_on_torch_resumed_keeps_its_parameters_frozen(tmp_path):
    """im2col's checkpoint into torch on two processes (DDP), end to end: results.json and
    the log say what was loaded; the frozen conv is bit for bit the source's after training,
    and after a resume, which takes the frozen set from the run's own config."""

    def train(*args: str) -> Path:
        result = run_cnnlab("train", *SMALL, *args, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return tmp_path / args[-1].partition("=")[2]

    source = tmp_path / "source"
    _im2col_run(source)
    # 3 of shapes' 6 classes: a new head; the conv frozen; 2 steps (which end the epoch).
    tune = ["data.classes=[0,2,4]", "trainer.freeze=[conv1]", "trainer.max_steps=2"]
    ddp = ["backend=torch", "trainer.devices=2", "trainer.batch_size=10"]
    tuned = train(*ddp, "trainer.init_from=source", *tune, "hydra.run.dir=tuned")
    results = json.loads((tuned / "results.json").read_text())
    assert results["init_from"] == {
        "path": str(source / "checkpoints" / "last.npz"),
        "loaded": ["conv1.w", "conv1.b", "fc1.w", "fc1.b"],
        "skipped": [],
        "reinitialised": ["fc2.w", "fc2.b"],
    }
    assert results["frozen"] == ["conv1.w", "conv1.b"]
    log = (tuned / "train.log").read_text()
    assert "re-initialised fc2.w (shape [3, 16] here, [6, 16] in the checkpoint)" in log
    src, first = _weights(source), _weights(tuned)
    for key in ("param/conv1.w", "param/conv1.b"):
        np.testing.assert_array_equal(first[key], src[key])
        assert f"optim/{key[6:]}/momentum_buffer" not in first
    assert not np.array_equal(first["param/fc1.w"], src["param/fc1.w"])

    further = ["trainer.epochs=2", "trainer.max_steps=5"]
    resumed = run_cnnlab("train", f"trainer.resume={tuned}", *further, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = _weights(tuned)
    results = json.loads((tuned / "results.json").read_text())
    assert results["steps"] == 5 and results["frozen"] == ["conv1.w", "conv1.b"]
    assert results["init_from"]["reinitialised"] == ["fc2.w", "fc2.b"]
    np.testing.assert_array_equal(final["param/conv1.w"], src["param/conv1.w"])
    assert not np.array_equal(final["param/fc1.w"], first["param/fc1.w"])


MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "mnist"


@pytest.mark.slow
def test_frozen_convs_from_digits_0_5_beat_scratch_on_500_images_of_6_9(tmp_path):
    """The README's demo (by hand: -m slow), seed 0: LeNet trained 1 epoch on digits 0-5,
    fine-tuned 1 epoch on 500 images of 6-9 with its convs frozen, at least 5 points above the
    same epoch from scratch."""
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST is not in {MNIST}")
    data = ["model=lenet", "data=mnist", f"data.root={MNIST.resolve()}", "trainer.epochs=1"]

    def test_acc(*args: str) -> float:
        result = run_cnnlab("train", *data, *args, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr
        run = tmp_path / args[-1].partition("=")[2]
        return json.loads((run / "results.json").read_text())["test_acc"]

    source = test_acc("data.classes=[0,1,2,3,4,5]", "hydra.run.dir=source")
    target = ["data.classes=[6,7,8,9]", "data.limit=500", "optim.warmup_steps=0"]
    scratch = test_acc(*target, "hydra.run.dir=scratch")
    tuned = test_acc(
        *target, "trainer.init_from=source", "trainer.freeze=[conv1,conv2]", "hydra.run.dir=tuned"
    )
    print(f"source {source:.4f}, scratch {scratch:.4f}, fine-tuned {tuned:.4f}")
    assert source >= 0.97
    assert tuned >= scratch + 0.05
