"""The torch engine's switches: precision, memory layout and compilation change how a step is
computed, not what it computes (up to the precision's rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.backends import BackendOptions, get_backend
from cnnlab.compare import rel_error
from cnnlab.config import compose
from cnnlab.errors import ShapeError, UsageError
from cnnlab.models import instantiate
from cnnlab.train.engine import make_engine


def engine(options: BackendOptions, model: str = "resnet18", *overrides: str):
    cfg = compose("train", [f"model={model}", *overrides])
    rng = np.random.default_rng(0)
    net = instantiate(cfg.model, cfg.norm, cfg.init, (3, 16, 16), rng, np.float32, act=cfg.act)
    return make_engine(get_backend("torch"), net, cfg.optim, options=options)


def steps(eng, n: int = 3) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits of the last of n steps on fixed batches, and the gradients of that step."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 6, 16)
    for i in range(n):
        step = eng.train_step(x, y, 0.05, np.random.default_rng(i))
    return eng.host(step.logits), eng.grads()


def flat(grads: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([grads[k].ravel() for k in sorted(grads)])


SMALL = ("model.widths=[4,8,8,8]",)


# bfloat16 rounds at 2^-9 relative: one step's logits within 5%; its gradient within 30% as a
# whole (batch norm's backward subtracts means of products of bfloat16 values, and at these
# widths that cancellation costs bits: plain torch under autocast gives the same; without batch
# norm the gradient is within 3%). Over one step, as training steps compound the rounding.
@pytest.mark.parametrize(
    ("options", "n", "tolerance", "grad_tolerance"),
    [
        (BackendOptions(threads=1, channels_last=True), 3, 1e-5, 1e-5),
        (BackendOptions(threads=1, precision="bf16-mixed"), 1, 5e-2, 0.3),
        (BackendOptions(threads=1, precision="bf16-mixed", channels_last=True), 1, 5e-2, 0.3),
    ],
    ids=["channels_last", "bf16-mixed", "bf16-mixed+channels_last"],
)
def test_switches_keep_the_float32_result(options, n, tolerance, grad_tolerance):
    want_logits, want = steps(engine(BackendOptions(threads=1), "resnet18", *SMALL), n)
    got_logits, got = steps(engine(options, "resnet18", *SMALL), n)
    assert rel_error(got_logits, want_logits) <= tolerance
    assert got_logits.dtype == np.float32  # autocast's logits come back in float32
    assert all(g.dtype == np.float32 for g in got.values())  # as the weights they update
    assert rel_error(flat(got), flat(want)) <= grad_tolerance


def test_channels_last_keeps_conv_weights_nhwc_and_checkpoints_nchw_values():
    eng = engine(BackendOptions(threads=1, channels_last=True), "resnet18", *SMALL)
    steps(eng, 1)
    w = eng.named["conv1.w"]
    assert w.is_contiguous(memory_format=torch.channels_last)
    state = eng.state()
    np.testing.assert_array_equal(state["param/conv1.w"], w.detach().numpy())
    again = engine(BackendOptions(threads=1, channels_last=True), "resnet18", *SMALL)
    again.load_state(state)
    (a, _), (b, _) = steps(eng, 2), steps(again, 2)
    np.testing.assert_array_equal(a, b)


def test_a_compile_failure_is_one_line(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def failing(module, **kwargs):
        def run(*args, **kw):
            raise BackendCompilerFailed(None, RuntimeError("no C++ compiler found"), None)

        return run

    monkeypatch.setattr(torch, "compile", failing)
    eng = engine(BackendOptions(threads=1, compile=True), "lenet")
    with pytest.raises(UsageError) as caught:
        steps(eng, 1)
    message = str(caught.value)
    assert message.startswith("trainer.compile=true: torch.compile failed here")
    assert "\n" not in message and "compiler" in message


def test_a_step_error_under_compile_is_not_blamed_on_it(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    eng = engine(BackendOptions(threads=1, compile=True), "lenet")
    with pytest.raises(ShapeError) as caught:
        eng.train_step(np.zeros((2, 3, 15, 16), np.float32), np.zeros(2, np.int64), 0.1, None)
    assert "compile" not in str(caught.value)


@pytest.mark.slow
def test_compiled_steps_match_eager_ones():
    want_logits, want = steps(engine(BackendOptions(threads=2), "alexnet_lite", *ALEX))
    got_logits, got = steps(engine(BackendOptions(threads=2, compile=True), "alexnet_lite", *ALEX))
    assert rel_error(got_logits, want_logits) <= 1e-5
    assert rel_error(flat(got), flat(want)) <= 1e-5


ALEX = ("model.filters=[4,8,8,8,8]", "model.hidden=[16,16]")


def test_loss_scaling_state_is_checkpointed_and_resumes_exactly():
    """16-mixed's loss scale is part of the state. (It runs on CUDA; torch's CPU autocast
    does float16 too, which lets this test drive the engine here.)"""
    options = BackendOptions(threads=1, precision="16-mixed")
    eng = engine(options, "lenet")
    steps(eng, 3)
    assert eng.scaler.get_scale() < 2.0**16  # the first steps overflowed and backed off
    state = eng.state()
    again = engine(options, "lenet")
    again.load_state(state)
    assert again.scaler.get_scale() == eng.scaler.get_scale()
    (a, ga), (b, gb) = steps(eng, 2), steps(again, 2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(flat(ga), flat(gb))
