"""Optimizers and schedules: the numpy optimizers against torch.optim, state, schedules, configs.

The numpy and torch optimizers run 20 steps from the same float64 parameters on the same random
gradients, with a learning rate that changes every step, and must agree within 1e-12 relative,
both in the parameters and in how far they moved (the latter is the stricter test for Adam,
whose steps are small next to the parameters).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from cnnlab.errors import RunError, UsageError
from cnnlab.schema import OPTIM_SCHEMAS, OptimName, Schedule, check_bounds
from cnnlab.train.optim import (
    NumpyOptimizer,
    learning_rate,
    set_torch_lr,
    torch_optimizer,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "optim"
SHAPES = {"conv.w": (4, 3, 3, 3), "conv.b": (4,), "fc.w": (5, 7), "fc.b": (5,)}
STEPS = 20
STEPS_PER_EPOCH = 3
RTOL = 1e-12

# (optimizer, extra keys); momentum twice, with and without Nesterov.
CASES = [
    ("sgd", {}),
    ("momentum", {}),
    ("momentum", {"nesterov": True}),
    ("adam", {}),
    ("adamw", {}),
    ("adagrad", {}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.9}),
]
CASE_IDS = [
    "sgd",
    "momentum",
    "nesterov",
    "adam",
    "adamw",
    "adagrad",
    "rmsprop",
    "rmsprop-momentum",
]


def make_config(option: str, **keys):
    """The ``optim`` node of ``option`` as its schema types it, with ``keys`` overridden."""
    return OmegaConf.merge(OmegaConf.structured(OPTIM_SCHEMAS[option]), keys)


def make_params(dtype=np.float64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def make_grads(steps: int, dtype=np.float64, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in range(steps)
    ]


def run_numpy(cfg, params, grads, start: int = 0) -> NumpyOptimizer:
    opt = NumpyOptimizer(cfg, params)
    for i, g in enumerate(grads, start):
        opt.step(g, learning_rate(cfg, i, STEPS_PER_EPOCH, STEPS))
    return opt


def run_torch(cfg, params, grads) -> dict[str, np.ndarray]:
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch_optimizer(cfg, list(tensors.values()))
    for i, g in enumerate(grads):
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        set_torch_lr(opt, learning_rate(cfg, i, STEPS_PER_EPOCH, STEPS))
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# -- numpy against torch ---------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "step"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["wd0", "wd"])
@pytest.mark.parametrize(("name", "keys"), CASES, ids=CASE_IDS)
def test_numpy_matches_torch_float64(name, keys, weight_decay, schedule):
    cfg = make_config(
        name, weight_decay=weight_decay, schedule=schedule, step_size=2, gamma=0.5, **keys
    )
    start = make_params()
    grads = make_grads(STEPS)
    params = {k: v.copy() for k, v in start.items()}
    run_numpy(cfg, params, grads)
    expected = run_torch(cfg, start, grads)
    for k in SHAPES:
        assert params[k].dtype == np.float64
        assert rel_error(params[k], expected[k]) <= RTOL, k
        moved, moved_torch = params[k] - start[k], expected[k] - start[k]
        assert np.linalg.norm(moved_torch) > 0
        assert rel_error(moved, moved_torch) <= RTOL, k


@pytest.mark.parametrize(("name", "keys"), CASES, ids=CASE_IDS)
def test_float32_stays_float32(name, keys):
    cfg = make_config(name, weight_decay=0.01, schedule="cosine", **keys)
    start = make_params(np.float32)
    grads = make_grads(STEPS, np.float32)
    params = {k: v.copy() for k, v in start.items()}
    opt = run_numpy(cfg, params, grads)
    expected = run_torch(cfg, start, grads)
    for k in SHAPES:
        assert params[k].dtype == np.float32
        assert rel_error(params[k], expected[k]) <= 1e-6, k
    for key, value in opt.state_dict().items():
        assert value.dtype == (np.int64 if key == "step" else np.float32), key


def test_sgd_by_hand():
    # p = 1, g = 0.5, lr = 0.1, wd = 0.1: p - lr * (g + wd * p) = 1 - 0.1 * 0.6 = 0.94
    params = {"w": np.array([1.0])}
    NumpyOptimizer(make_config("sgd", weight_decay=0.1), params).step({"w": np.array([0.5])}, 0.1)
    assert params["w"][0] == pytest.approx(0.94, rel=1e-15)


def test_momentum_by_hand():
    # mu = 0.9, lr = 1, g = 1 then 1: buf = 1, then 0.9 + 1 = 1.9; p = 0 - 1 - 1.9 = -2.9.
    # Nesterov steps g + mu * buf: 1 + 0.9 = 1.9, then 1 + 0.9 * 1.9 = 2.71; p = -4.61.
    for nesterov, expected in [(False, -2.9), (True, -4.61)]:
        params = {"w": np.array([0.0])}
        opt = NumpyOptimizer(make_config("momentum", nesterov=nesterov, weight_decay=0.0), params)
        for _ in range(2):
            opt.step({"w": np.array([1.0])}, 1.0)
        assert params["w"][0] == pytest.approx(expected, rel=1e-14)


def test_adam_first_step_is_lr_times_sign():
    # At t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g| + eps) ≈ lr·sign(g).
    params = {"w": np.array([0.0, 0.0])}
    NumpyOptimizer(make_config("adam"), params).step({"w": np.array([3.0, -0.5])}, 1e-3)
    np.testing.assert_allclose(params["w"], [-1e-3, 1e-3], rtol=1e-7)


# -- state -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "keys"), CASES, ids=CASE_IDS)
def test_state_dict_round_trip_continues_bit_for_bit(name, keys):
    cfg = make_config(name, weight_decay=0.01, schedule="cosine", **keys)
    grads = make_grads(STEPS)
    straight = make_params()
    run_numpy(cfg, straight, grads)

    params = make_params()
    first = run_numpy(cfg, params, grads[:10])
    state = first.state_dict()
    saved = {k: v.copy() for k, v in params.items()}
    first.step(grads[10], 1.0)  # the saved state must not move with the optimizer
    assert int(state["step"]) == 10
    assert state["step"].shape == () and state["step"].dtype == np.int64

    resumed = NumpyOptimizer(cfg, saved)
    resumed.load_state_dict(state)
    for i in range(10, STEPS):
        resumed.step(grads[i], learning_rate(cfg, i, STEPS_PER_EPOCH, STEPS))
    for k in SHAPES:
        assert np.array_equal(saved[k], straight[k]), k


@pytest.mark.parametrize("name", list(OptimName))
def test_state_dict_keys(name):
    expected_slots = {
        "sgd": [],
        "momentum": ["momentum_buffer"],
        "adam": ["exp_avg", "exp_avg_sq"],
        "adamw": ["exp_avg", "exp_avg_sq"],
        "adagrad": ["sum"],
        "rmsprop": ["square_avg"],
    }
    state = NumpyOptimizer(make_config(name), make_params()).state_dict()
    keys = {f"{p}/{slot}" for p in SHAPES for slot in expected_slots[name]} | {"step"}
    assert set(state) == keys
    for key, value in state.items():
        if key != "step":
            assert value.shape == SHAPES[key.rsplit("/", 1)[0]]


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """With a zero gradient Adam's update is 0 (m = v = 0): AdamW's step is the decay alone,
    where Adam's L2 decay goes through the moments."""
    params = make_params()
    start = {k: v.copy() for k, v in params.items()}
    zero = {k: np.zeros(s) for k, s in SHAPES.items()}
    NumpyOptimizer(make_config("adamw", weight_decay=0.1), params).step(zero, 0.5)
    for k in SHAPES:
        np.testing.assert_allclose(params[k], start[k] * (1 - 0.5 * 0.1), rtol=1e-15)


def test_adagrad_first_step_is_lr_times_sign_and_rmsprop_momentum_keeps_a_buffer():
    params = make_params()
    start = {k: v.copy() for k, v in params.items()}
    g = make_grads(1)[0]
    NumpyOptimizer(make_config("adagrad", eps=0.0), params).step(g, 0.1)
    for k in SHAPES:  # s = g^2 after one step: g / sqrt(s) = sign(g)
        np.testing.assert_allclose(params[k], start[k] - 0.1 * np.sign(g[k]), rtol=1e-15)
    opt = NumpyOptimizer(make_config("rmsprop", momentum=0.5), make_params())
    assert {key.rsplit("/", 1)[1] for key in opt.state} == {"square_avg", "momentum_buffer"}


def test_load_state_dict_refuses_another_optimizer_state():
    adam_state = NumpyOptimizer(make_config("adam"), make_params()).state_dict()
    with pytest.raises(RunError, match="optim=momentum"):
        NumpyOptimizer(make_config("momentum"), make_params()).load_state_dict(adam_state)
    float32 = NumpyOptimizer(make_config("adam"), make_params(np.float32)).state_dict()
    with pytest.raises(RunError, match="float32"):
        NumpyOptimizer(make_config("adam"), make_params()).load_state_dict(float32)


def test_step_needs_every_gradient():
    opt = NumpyOptimizer(make_config("sgd"), make_params())
    grads = make_grads(1)[0]
    del grads["fc.b"]
    with pytest.raises(KeyError, match=r"fc\.b"):
        opt.step(grads, 0.1)


# -- schedules -------------------------------------------------------------------------------------


def test_schedule_none_is_constant():
    cfg = make_config("sgd", lr=0.3)
    assert [learning_rate(cfg, s, 7, 100) for s in (0, 50, 100, 1000)] == [0.3] * 4


def test_schedule_step_boundaries():
    # 5 steps per epoch, a drop every 2 epochs: steps 0-9 at lr, 10-19 at lr/10, 20-29 at lr/100.
    cfg = make_config("momentum", lr=0.1, schedule="step", step_size=2, gamma=0.1, warmup_steps=0)
    expected = {0: 0.1, 9: 0.1, 10: 0.01, 19: 0.01, 20: 0.001, 29: 0.001, 30: 1e-4}
    for step, lr in expected.items():
        assert learning_rate(cfg, step, 5, 100) == pytest.approx(lr, rel=1e-14), step


def test_warmup_scales_the_first_steps_linearly():
    cfg = make_config("sgd", lr=0.1, schedule="none", warmup_steps=4)
    assert [learning_rate(cfg, s, 10, 100) for s in range(6)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rel=1e-14
    )
    cosine = make_config("sgd", lr=0.1, schedule="cosine", warmup_steps=10)
    plain = make_config("sgd", lr=0.1, schedule="cosine")
    assert learning_rate(cosine, 2, 10, 100) == pytest.approx(
        0.3 * learning_rate(plain, 2, 10, 100)
    )
    assert learning_rate(cosine, 50, 10, 100) == learning_rate(plain, 50, 10, 100)
    with pytest.raises(UsageError, match=r"optim\.warmup_steps must be >= 0, got -1"):
        check_bounds(make_config("sgd", warmup_steps=-1), "optim.")


def test_schedule_cosine_endpoints_and_midpoint():
    cfg = make_config("adam", lr=0.1, schedule="cosine", min_lr=0.001)
    T = 40
    assert learning_rate(cfg, 0, 10, T) == 0.1
    assert learning_rate(cfg, T, 10, T) == pytest.approx(0.001, rel=1e-14)
    assert learning_rate(cfg, T + 5, 10, T) == pytest.approx(0.001, rel=1e-14)
    assert learning_rate(cfg, T // 2, 10, T) == pytest.approx(0.0505, rel=1e-14)
    quarter = 0.001 + 0.099 * (1 + math.cos(math.pi / 4)) / 2
    assert learning_rate(cfg, T // 4, 10, T) == pytest.approx(quarter, rel=1e-14)
    steps = [learning_rate(cfg, s, 10, T) for s in range(T + 1)]
    assert all(a > b for a, b in itertools.pairwise(steps))
    assert learning_rate(make_config("sgd", lr=0.2, schedule="cosine"), T, 10, T) == 0.0


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_optimizer_is_refused_with_the_choices():
    with pytest.raises(ValidationError, match="lbfgs"):
        make_config("sgd", name="lbfgs")
    with pytest.raises(ValueError, match=r"'lbfgs'.*sgd, momentum, adam, adamw, adagrad, rmsprop"):
        OptimName("lbfgs")


def test_the_schema_admits_only_the_known_schedules():
    from omegaconf.errors import ValidationError

    assert [s.value for s in Schedule] == ["none", "step", "cosine"]
    with pytest.raises(ValidationError, match="linear"):
        make_config("adam", schedule="linear")


@pytest.mark.parametrize(
    ("name", "keys", "message"),
    [
        ("sgd", {"lr": -1.0}, r"optim\.lr must be >= 0, got -1"),
        ("sgd", {"step_size": 0}, r"optim\.step_size must be >= 1"),
        ("momentum", {"momentum": 1.5}, r"optim\.momentum must be in \[0, 1\), got 1\.5"),
        ("momentum", {"momentum": float("nan")}, "optim.momentum must be in"),
        ("adam", {"betas": [0.9, 1.0]}, r"optim\.betas must hold values in \[0, 1\)"),
        ("adam", {"betas": [0.9]}, r"optim\.betas must hold 2 values"),
    ],
)
def test_the_schemas_bound_each_hyperparameter(name, keys, message):
    with pytest.raises(UsageError, match=message):
        check_bounds(make_config(name, **keys), "optim.")


def test_nesterov_needs_momentum():
    cfg = make_config("momentum", momentum=0.0, nesterov=True)
    with pytest.raises(UsageError, match=r"^optim\.nesterov needs momentum > 0$"):
        check_bounds(cfg, "optim.")


# -- config files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OptimName))
def test_yaml_type_checks_against_its_schema(name):
    path = CONF / f"{name}.yaml"
    assert path.read_text().startswith("# "), "first line: a comment saying what the optimizer is"
    raw = OmegaConf.load(path)
    assert list(raw.defaults) == [f"{name}_schema", "_self_"]
    body = {k: v for k, v in OmegaConf.to_container(raw).items() if k != "defaults"}
    for key in ("lr", "weight_decay", "schedule", "step_size", "gamma", "min_lr"):
        assert key in body, key
    cfg = OmegaConf.merge(OmegaConf.structured(OPTIM_SCHEMAS[name]), body)
    assert cfg.name == name
    assert cfg.schedule in list(Schedule)
    # Each file and its schema say the same thing, so overriding the option keeps its values.
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(
        OmegaConf.structured(OPTIM_SCHEMAS[name])
    )
    check_bounds(cfg)  # the defaults are in range
    NumpyOptimizer(cfg, make_params())
    learning_rate(cfg, 0, 10, 100)


def test_schema_refuses_misspelt_keys_and_wrong_types():
    with pytest.raises(ConfigKeyError):
        make_config("momentum", nesterow=True)
    with pytest.raises(ValidationError):
        make_config("adam", lr="fast")


def test_schemas_are_registered():
    from hydra.core.config_store import ConfigStore

    from cnnlab.schema import register

    register()
    stored = ConfigStore.instance().list("optim")
    for name in OptimName:
        assert f"{name}_schema.yaml" in stored


# -- gradient clipping -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0.5, 100.0], ids=["clipped", "under the norm"])
def test_clip_grad_norm_matches_torch(max_norm):
    from cnnlab.train.optim import clip_grad_norm

    grads = make_grads(1)[0]
    tensors = {
        k: torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for k, v in grads.items()
    }
    for k, t in tensors.items():
        t.grad = torch.tensor(grads[k])
    before = {k: v.copy() for k, v in grads.items()}
    total = clip_grad_norm(grads, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(tensors.values(), max_norm)
    assert total == pytest.approx(float(expected), rel=1e-14)
    for k, t in tensors.items():
        assert rel_error(grads[k], t.grad.numpy()) <= 1e-14, k
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    if max_norm < total:
        assert norm == pytest.approx(max_norm, rel=1e-5)
    else:
        assert all(np.array_equal(grads[k], before[k]) for k in grads)


@pytest.mark.parametrize("backend", ["im2col", "torch"])
def test_a_clipped_training_step_moves_as_torch_does(backend):
    """Both engines clip the batch's gradients before the update: one step of each from the
    same weights ends at torch's (float64), and the clip changed the step."""
    from cnnlab.backends import BackendOptions, get_backend
    from cnnlab.config import compose
    from cnnlab.models import instantiate
    from cnnlab.train.engine import make_engine

    ends = {}
    for clip in ("null", "0.01"):
        cfg = compose("train", ["model=lenet", "optim=sgd", f"optim.clip_norm={clip}"])
        x = np.random.default_rng(0).standard_normal((4, 3, 32, 32))
        y = np.array([0, 1, 2, 3])
        for name in (backend, "torch"):
            model = instantiate(
                cfg.model, cfg.norm, cfg.init, (3, 32, 32), np.random.default_rng(1)
            )
            engine = make_engine(
                get_backend(name),
                model,
                cfg.optim,
                options=BackendOptions(precision="64-true", threads=1),
            )
            engine.train_step(x, y, 0.1, np.random.default_rng(2))
            ends[clip, name] = {k: v.copy() for k, v in engine.params().items()}
    for clip in ("null", "0.01"):
        for k in ends[clip, "torch"]:
            assert rel_error(ends[clip, backend][k], ends[clip, "torch"][k]) <= 1e-10, (clip, k)
    assert any(
        not np.allclose(ends["null", backend][k], ends["0.01", backend][k])
        for k in ends["null", "torch"]
    )
