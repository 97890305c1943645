"""Leaky ReLU, added through the registry alone: its kernels on every backend against torch,
and everywhere the registry reaches (gradcheck, completion, bench, summary, nets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.backends import BACKENDS
from cnnlab.compare import rel_error
from cnnlab.ops import layer_cases, layer_choices
from cnnlab.ops.activation import LeakyReLU
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.linear import Flatten, Linear
from cnnlab.ops.structure import Sequential
from tests.cli import run_cnnlab

NAMES = ("naive", "im2col", "torch")


@pytest.mark.parametrize("backend", NAMES)
@pytest.mark.parametrize("slope", [0.01, 0.2, 1.5])
def test_kernels_match_torch_including_the_gradient_at_zero(backend, slope):
    kernels = BACKENDS[backend].kernels()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :3] = 0.0  # torch's gradient at exactly 0 is the slope
    dout = np.random.default_rng(1).standard_normal(x.shape)
    out, cache = kernels.leaky_relu_forward(x, slope)
    dx = kernels.leaky_relu_backward(dout, cache)
    t = torch.tensor(x, requires_grad=True)
    expected = F.leaky_relu(t, slope)
    expected.backward(torch.tensor(dout))
    assert rel_error(out, expected.detach().numpy()) <= 1e-15
    assert rel_error(dx, t.grad.numpy()) <= 1e-15
    np.testing.assert_array_equal(dx[0, 0, 0, :3], slope * dout[0, 0, 0, :3])


@pytest.mark.parametrize("backend", NAMES)
def test_float32_stays_float32(backend):
    kernels = BACKENDS[backend].kernels()
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    out, cache = kernels.leaky_relu_forward(x, 0.1)
    assert out.dtype == np.float32
    assert kernels.leaky_relu_backward(np.ones_like(x), cache).dtype == np.float32


def test_it_is_a_layer_choice_with_gradient_checks():
    assert "leaky_relu" in layer_choices()
    variants = {c.variant for c in layer_cases("all") if c.layer == "leaky_relu"}
    assert variants == {"slope 0.01, (2,3,4,5)", "slope 0.2, (3,7)"}


def test_gradcheck_passes_on_every_backend(tmp_path):
    result = run_cnnlab(
        "gradcheck", "layer=leaky_relu", "backends=[naive,im2col,torch]", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "leaky_relu" in result.stdout


def test_completion_offers_it():
    from cnnlab.completion import complete_overrides

    assert complete_overrides("gradcheck", [], "layer=le") == ["layer=leaky_relu"]


def test_bench_layers_times_it():
    from omegaconf import OmegaConf

    from cnnlab.bench.cases import cases

    settings = OmegaConf.create({"cases": None, "batch": 2, "target": "layers"})
    (case,) = [c for c in cases(settings) if c.kind.name == "leaky_relu"]
    assert case.layer == LeakyReLU() and case.x == (2, 32, 16, 16)


def _net(slope: float) -> Sequential:
    return Sequential(
        (
            ("conv", Conv2d(4, 3, 1, 1)),
            ("act", LeakyReLU(slope)),
            ("flatten", Flatten()),
            ("fc", Linear(3)),
        )
    )


def test_summary_counts_it():
    from cnnlab.ops.tree import summarize

    summary = summarize(_net(0.2), (2, 5, 5))
    rows = {r["name"]: r for r in summary["layers"]}
    assert rows["act"]["layer"] == "LeakyReLU 0.2"
    assert rows["act"]["out_shape"] == [4, 5, 5] and rows["act"]["params"] == 0
    assert summary["total_params"] == (4 * 2 * 9 + 4) + (3 * 100 + 3)


def test_a_net_with_it_agrees_across_backends():
    from cnnlab.init import init_params
    from cnnlab.ops.tree import param_specs

    net, in_shape = _net(0.2), (2, 5, 5)
    rng = np.random.default_rng(4)
    params = init_params(param_specs(net, in_shape), "kaiming", "normal", rng, np.float64)
    x, y = rng.standard_normal((3, *in_shape)), np.array([0, 2, 1])
    results = {b: BACKENDS[b].model(net, params, {}).loss(x, y) for b in NAMES}
    loss, grads, _ = results["torch"]
    for b in ("naive", "im2col"):
        assert abs(results[b][0] - loss) <= 1e-12
        for name, g in grads.items():
            assert rel_error(results[b][1][name], g) <= 1e-10, (b, name)
