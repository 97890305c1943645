"""Label smoothing (``trainer.label_smoothing``): the loss of every kernel set against
``torch.nn.functional.cross_entropy(label_smoothing=ε)`` in float64, ε = 0 as before, a smoothed
training step of im2col equal to torch's, and the user backend's refusal."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.backends import BACKENDS, BackendOptions, UserSource, get_backend
from cnnlab.errors import ArgumentError, KernelMissingError, UsageError
from cnnlab.kernels.common import loss as common

KERNELS = {name: BACKENDS[name].kernels() for name in ("naive", "im2col", "torch")}
USER_FILE = Path(__file__).parents[1] / "user" / "files" / "cs231n_fast.py"


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def logits_and_labels(seed: int = 0, n: int = 9, k: int = 7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) * 3, rng.integers(0, k, size=n)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("backend", list(KERNELS))
def test_the_loss_and_its_gradient_are_torchs(backend, smoothing):
    logits, y = logits_and_labels()
    loss, dlogits = KERNELS[backend].softmax_cross_entropy(logits, y, smoothing=smoothing)
    t = torch.tensor(logits, requires_grad=True)
    expected = F.cross_entropy(t, torch.tensor(y), label_smoothing=smoothing)
    expected.backward()
    assert abs(loss - expected.item()) <= 1e-12 * abs(expected.item())
    assert rel_error(dlogits, t.grad.numpy()) <= 1e-12
    assert dlogits.dtype == np.float64


def test_the_gradient_is_softmax_minus_the_smoothed_targets_over_n():
    logits, y = logits_and_labels(1)
    n, k = logits.shape
    eps = 0.2
    _, dlogits = common.softmax_cross_entropy(logits, y, smoothing=eps)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    targets = (1 - eps) * np.eye(k)[y] + eps / k
    np.testing.assert_allclose(dlogits, (p - targets) / n, rtol=0, atol=1e-15)
    # Each row of the targets sums to 1, so each row of the gradient sums to 0.
    np.testing.assert_allclose(dlogits.sum(axis=1), 0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_smoothing_is_the_loss_of_before_bit_for_bit(dtype):
    """ε = 0, given or not, computes exactly what the loss computed before it had ε."""
    logits, y = logits_and_labels(2)
    logits = logits.astype(dtype)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    before_loss = -float(log_probs[rows, y].mean())
    before = np.exp(log_probs)
    before[rows, y] -= 1
    before /= len(y)
    for loss, dlogits in (
        common.softmax_cross_entropy(logits, y),
        common.softmax_cross_entropy(logits, y, smoothing=0.0),
    ):
        assert loss == before_loss
        np.testing.assert_array_equal(dlogits, before)
        assert dlogits.dtype == dtype


def test_float32_stays_float32_with_smoothing():
    logits, y = logits_and_labels(3)
    for kern in KERNELS.values():
        _, dlogits = kern.softmax_cross_entropy(logits.astype(np.float32), y, smoothing=0.1)
        assert dlogits.dtype == np.float32


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, float("nan")])
@pytest.mark.parametrize("backend", list(KERNELS))
def test_every_kernel_set_refuses_a_smoothing_outside_0_1(backend, smoothing):
    logits, y = logits_and_labels()
    with pytest.raises(ArgumentError, match=r"smoothing must be in \[0, 1\)"):
        KERNELS[backend].softmax_cross_entropy(logits, y, smoothing=smoothing)


def test_the_gradient_check_fails_a_loss_that_ignores_smoothing():
    """The smoothed gradient-check case can fail: a loss that drops ε differs from torch's."""
    from cnnlab.gradcheck.run import Thresholds, check_layer_case
    from cnnlab.ops import layer_cases
    from cnnlab.schema import GradcheckSettings

    naive = KERNELS["naive"]
    deaf = types.SimpleNamespace(
        softmax_cross_entropy=lambda logits, y, smoothing=0.0: naive.softmax_cross_entropy(
            logits, y
        )
    )
    cases = layer_cases("softmax")
    assert [c.variant for c in cases] == [
        "8 samples, 7 classes",
        "8 samples, 7 classes, smoothing 0.1",
    ]
    thresholds = Thresholds.of(GradcheckSettings())
    for case, fails in zip(cases, (False, True), strict=True):
        records = check_layer_case(case, 0, 0, {"deaf": deaf}, KERNELS["torch"], thresholds)
        torch_rows = {r.tensor: r.passed for r in records if r.reference == "torch"}
        assert torch_rows == {"out": not fails, "logits": not fails}


def _step_ends(backend: str, smoothing: float) -> dict[str, np.ndarray]:
    from cnnlab.config import compose
    from cnnlab.models import instantiate
    from cnnlab.train.engine import make_engine

    cfg = compose("train", ["model=lenet", "optim=sgd"])
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32))
    y = np.array([0, 1, 2, 3])
    model = instantiate(cfg.model, cfg.norm, cfg.init, (3, 32, 32), np.random.default_rng(1))
    engine = make_engine(
        get_backend(backend),
        model,
        cfg.optim,
        options=BackendOptions(precision="64-true", threads=1),
        label_smoothing=smoothing,
    )
    step = engine.train_step(x, y, 0.1, np.random.default_rng(2))
    ends = {k: v.copy() for k, v in engine.params().items()}
    ends["loss"] = np.asarray(engine.fetch([step])[0, 0])
    return ends


def test_a_smoothed_training_step_of_im2col_moves_as_torch_does():
    """One SGD step of each engine from the same weights (float64) with ε = 0.1: the same loss
    and the same weights after, within 1e-10; and ε changed the step."""
    im2col, torch_ends = _step_ends("im2col", 0.1), _step_ends("torch", 0.1)
    for k in torch_ends:
        assert rel_error(im2col[k], torch_ends[k]) <= 1e-10, k
    plain = _step_ends("im2col", 0.0)
    assert plain["loss"] != im2col["loss"]
    assert any(not np.allclose(plain[k], im2col[k]) for k in plain if k != "loss")


def test_the_schema_bounds_the_key():
    from cnnlab.config import compose

    assert compose("train", []).trainer.label_smoothing == 0.0
    with pytest.raises(UsageError, match=r"trainer\.label_smoothing must be in \[0, 1\), got 1"):
        compose("train", ["trainer.label_smoothing=1.0"])


def test_the_user_backend_refuses_smoothing_in_one_line():
    """A user's softmax_loss(x, y) takes hard labels: ε > 0 is refused before anything runs,
    and by its kernel set (a skipped row in gradcheck); ε = 0 runs the user's loss."""
    from cnnlab.commands.train import check_config
    from cnnlab.config import compose
    from cnnlab.kernels.user import UserKernels

    overrides = ["backend=user", f"user.file={USER_FILE}", "model=threelayer"]
    check_config(compose("train", overrides))
    with pytest.raises(UsageError, match=r"^backend=user: trainer\.label_smoothing=0\.1: "):
        check_config(compose("train", [*overrides, "trainer.label_smoothing=0.1"]))

    kern = UserKernels(UserSource(file=str(USER_FILE)))
    try:
        logits, y = logits_and_labels()
        loss, _ = kern.softmax_cross_entropy(logits, y)
        assert loss == pytest.approx(common.softmax_cross_entropy(logits, y)[0], rel=1e-12)
        with pytest.raises(KernelMissingError, match="takes hard labels: no label smoothing"):
            kern.softmax_cross_entropy(logits, y, smoothing=0.1)
    finally:
        kern.close()
