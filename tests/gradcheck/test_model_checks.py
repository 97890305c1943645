"""Whole-model gradient checks: every model on every backend, and the CLI's records."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.commands.gradcheck import WHOLE_MODEL
from cnnlab.config import compose
from cnnlab.gradcheck.model_check import check_model, make_problem, sampled_coordinates
from cnnlab.gradcheck.run import Thresholds
from cnnlab.models import MODELS
from cnnlab.schema import GradcheckSettings

THRESHOLDS = Thresholds.of(GradcheckSettings())  # the defaults of the config
# The naive loops are slow: narrower models and fewer sampled coordinates there, and
# ResNet-18 (sixty-odd tensors, each probed by whole forward passes) on 8x8 inputs.
SETTINGS = {"naive": (0.0625, 2), "im2col": (0.125, 3), "torch": (0.125, 3)}
# GoogLeNet's nine Inception modules hold 173 tensors (57 convs, each with a batch norm): its
# checks build three, 3a – pool – 4a – pool – 5a, with every kind of layer and join it has.
SHALLOW_GOOGLENET = [
    "model.modules=[[64,96,128,16,32,32],[192,96,208,16,48,64],[384,192,384,48,128,128]]",
    "model.pool_before=[1,2]",
]
SMALLER = {
    ("naive", "resnet18"): ["gradcheck.image_size=8"],
    ("naive", "zfnet"): ["gradcheck.image_size=8"],  # its 5x5 and 3x3 convs at 8x8, 4x4, 2x2
    ("naive", "nin"): ["gradcheck.image_size=8"],
    ("im2col", "googlenet"): SHALLOW_GOOGLENET,
    ("torch", "googlenet"): SHALLOW_GOOGLENET,
}
# These check the blocks they are built of at a reduced depth (each tensor costs whole forward
# passes): two stages of one block for the ResNets (a bottleneck's first block widens 64 ->
# 256 at stride 1, the next strides; ResNet-34's BasicBlocks are ResNet-18's, checked in full),
# two dense blocks of two layers with a transition for DenseNet, and three MobileNetV2 stages
# (t=1; t=6 twice, the second a residual; a stride-2 t=6).
TWO_STAGES = ["model.widths=[64,128]", "model.blocks=[1,1]"]
REDUCED = {
    "resnet34": TWO_STAGES,
    "resnet50": TWO_STAGES,
    "resnext50_32x4d": TWO_STAGES,
    "se_resnet18": TWO_STAGES,
    "densenet121": ["model.blocks=[2,2]"],
    "mobilenet_v2": [
        "model.expansions=[1,6,6]",
        "model.channels=[16,24,32]",
        "model.repeats=[1,2,1]",
        "model.strides=[1,2,2]",
    ],
}
SMALLER.update({(b, m): o for m, o in REDUCED.items() for b in ("im2col", "torch")})
# Models naive is not checked on (their im2col and torch checks stand): at the smallest input
# they accept, its loops make the hundreds of whole forward passes of a check take tens of
# seconds each.
NAIVE_SKIPS = {
    "vgg11": "VGG's five 2x2 pools need 32x32 inputs",
    "vgg16": "VGG's five 2x2 pools need 32x32 inputs",
    "googlenet": "even three of GoogLeNet's modules take 500 forward passes through 21 convs",
    **{
        m: "a check's hundreds of forward passes take seconds each there; the kernels its "
        "layers run (grouped and depthwise convs, concat, channel gate) are checked on naive "
        "one by one, and its logits and gradients against torch in tests/models"
        for m in REDUCED
    },
}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("backend", list(SETTINGS))
def test_model_passes_on_backend(model, backend):
    if backend == "naive" and model in NAIVE_SKIPS:
        pytest.skip(f"naive is too slow for {model}: {NAIVE_SKIPS[model]}")
    width, samples = SETTINGS[backend]
    overrides = [f"model={model}", f"gradcheck.width_scale={width}"]
    cfg = compose("gradcheck", overrides + SMALLER.get((backend, model), []))
    problem = make_problem(cfg)
    losses = {}
    records = [
        r
        for batch in check_model(
            problem, [BACKENDS[backend]], THRESHOLDS, samples, 0, losses.__setitem__
        )
        for r in batch
    ]
    failed = [(r.tensor, r.reference, r.rel_error) for r in records if not r.passed]
    assert not failed
    assert all(r.target == "model" and r.model == model for r in records)
    numeric = [r for r in records if r.reference == "numeric"]
    assert {r.tensor for r in numeric} == set(problem.params)  # every parameter checked
    for r in numeric:
        assert r.method == f"{min(samples, problem.params[r.tensor].size)} sampled"
        assert r.fd_error is not None
    if backend != "torch":
        assert {r.tensor for r in records if r.reference == "torch"} == {"logits", *problem.params}
    assert math.isfinite(losses[backend])


def test_a_wrong_model_gradient_fails():
    """A backend whose conv weight gradient is off by 1% fails on that tensor only."""
    cfg = compose("gradcheck", ["model=threelayer", "gradcheck.width_scale=0.125"])
    problem = make_problem(cfg)
    real = BACKENDS["im2col"]

    class Broken:
        name = "broken"

        def model(self, net, params, buffers, options=None):
            inner = real.model(net, params, buffers)
            loss = inner.loss

            def broken_loss(*args, **kwargs):
                value, grads, logits = loss(*args, **kwargs)
                if "conv1.w" in grads:
                    grads["conv1.w"] = grads["conv1.w"] * 1.01
                return value, grads, logits

            inner.loss = broken_loss
            return inner

    records = [r for b in check_model(problem, [Broken()], THRESHOLDS, 3, 0) for r in b]
    assert {(r.tensor, r.reference) for r in records if not r.passed} == {
        ("conv1.w", "torch"),
        ("conv1.w", "numeric"),
    }


def test_sampled_coordinates_start_with_the_largest():
    grad = np.array([[0.1, -3.0], [0.2, 0.0]])
    index = sampled_coordinates(grad, 3, np.random.default_rng(0))
    assert index[0] == 1 and len(set(index)) == 3


def test_biases_are_moved_off_zero_for_the_check():
    problem = make_problem(compose("gradcheck", ["model=lenet"]))
    assert not np.any(problem.initial["conv1.b"])  # the init scheme's zeros
    assert np.all(problem.params["conv1.b"] != 0)
    np.testing.assert_array_equal(problem.params["conv1.w"], problem.initial["conv1.w"])


def test_cli_model_check_writes_model_records(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "gradcheck", "model=threelayer", "backends=[im2col,cuda]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "im2col: initial loss" in result.stdout
    (path,) = tmp_path.glob("outputs/*/*/gradcheck.json")
    records = json.loads(path.read_text())
    ran = [r for r in records if not r["skipped"]]
    assert ran and all(r["target"] == "model" and r["model"] == "threelayer" for r in ran)
    assert {"conv1.w", "fc2.b", "logits"} <= {r["tensor"] for r in ran}


def test_layer_and_model_together_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "gradcheck", "model=lenet", "layer=conv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "give layer= or model=, not both" in result.stderr


def test_a_mixed_precision_skips_whole_model_checks_saying_why(tmp_path):
    args = ["model=threelayer", "backends=[im2col,torch]", "trainer.precision=bf16-mixed"]
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "gradcheck", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = tmp_path.glob("outputs/*/*/gradcheck.json")
    reasons = {r["backend"]: r["reason"] for r in json.loads(path.read_text()) if r["skipped"]}
    assert reasons == {
        "im2col": "trainer.precision=bf16-mixed needs a torch backend (numpy has no autocast)",
        "torch": WHOLE_MODEL,
    }
    assert "torch skipped threelayer: whole-model checks run in 32/64-bit" in " ".join(
        result.stdout.split()
    )
