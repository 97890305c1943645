"""Every layer case gradient-checked on every backend usable here; a wrong gradient fails."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from cnnlab.backends import BACKENDS, BUILT_IN, BackendOptions
from cnnlab.gradcheck.run import Thresholds, check_layer_case, check_layers
from cnnlab.ops import layer_cases
from cnnlab.schema import GradcheckSettings

THRESHOLDS = Thresholds.of(GradcheckSettings())  # the defaults of the config
USABLE = [BACKENDS[n] for n in BUILT_IN if BACKENDS[n].availability()[0]]
LAYER_CASES = layer_cases()


def index_of(case):
    return [(c.layer, c.variant) for c in LAYER_CASES].index((case.layer, case.variant))


@pytest.fixture(scope="module")
def torch_reference():
    return BACKENDS["torch"].kernels()


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c.layer}: {c.variant}")
def test_case_passes_on_every_backend(case, torch_reference):
    kernel_sets = {b.name: b.kernels() for b in USABLE}
    index = index_of(case)
    records = check_layer_case(case, index, 0, kernel_sets, torch_reference, THRESHOLDS)
    failed = [r for r in records if not r.passed]
    assert not failed, failed
    # Each numpy backend is checked against both references, torch against numeric.
    kinds = {(r.backend, r.reference) for r in records}
    assert {
        ("naive", "numeric"),
        ("naive", "torch"),
        ("im2col", "torch"),
        ("torch", "numeric"),
    } <= kinds
    assert all(r.rel_error < 1e-8 for r in records if not r.zero_gradient)
    # Differenced element by element (the 16-channel conv, past elementwise_max, along
    # directions), at a tolerance set by the differences' own error, below the cap.
    numeric = [r for r in records if r.reference == "numeric"]
    methods = {"elements", f"{THRESHOLDS.directions} directions"}
    assert all(r.method in methods and r.threshold < THRESHOLDS.rtol_numeric for r in numeric)
    assert any(r.method == "elements" for r in numeric) or "16 channels" in case.variant


def test_every_case_passes_along_directions():
    """The check a wide layer gets, on every small case: every kind of layer, not only conv,
    is judged rightly along random directions."""
    along = dataclasses.replace(THRESHOLDS, elementwise_max=0)
    records = [r for batch in check_layers(LAYER_CASES, USABLE, 0, along) for r in batch]
    failed = [r for r in records if r.passed is False]
    assert not failed, failed
    numeric = [r for r in records if r.reference == "numeric"]
    assert numeric and all(r.method == "8 directions" for r in numeric)


def test_a_wrong_backward_fails_the_check(torch_reference):
    """A kernel set whose conv dw is off by 1% must not pass (the check can fail)."""
    im2col = BACKENDS["im2col"].kernels()

    def broken_backward(dout, cache):
        dx, dw, db = im2col.conv2d_backward(dout, cache)
        return dx, dw * 1.01, db

    broken = types.SimpleNamespace(
        conv2d_forward=im2col.conv2d_forward, conv2d_backward=broken_backward
    )
    case = layer_cases("conv")[0]
    records = check_layer_case(case, 0, 0, {"broken": broken}, torch_reference, THRESHOLDS)
    failed = {(r.tensor, r.reference) for r in records if not r.passed}
    assert failed == {("w", "numeric"), ("w", "torch")}


def test_unavailable_backend_gives_skipped_records():
    cuda = BACKENDS["cuda"]
    if cuda.availability()[0]:
        pytest.skip("CUDA is available here")
    records = next(check_layers(layer_cases("relu"), [cuda], 0, THRESHOLDS))
    assert records and all(r.skipped and r.passed is None for r in records)
    assert "CUDA" in records[0].reason


def test_inputs_are_the_same_for_one_layer_and_for_all():
    case = layer_cases("conv")[1]
    index = index_of(case)
    a = case.make(np.random.default_rng([0, index]))
    b = case.make(np.random.default_rng([0, index]))
    np.testing.assert_array_equal(a["x"], b["x"])


def test_thresholds_check_true_precisions_in_float64_and_mixed_ones_by_their_tolerance():
    settings = GradcheckSettings()
    assert Thresholds.of(settings, "32-true") == THRESHOLDS  # float64 checks, whatever storage
    assert THRESHOLDS.precision == "64-true" and not THRESHOLDS.mixed
    assert THRESHOLDS.torch_rtol() == settings.rtol_torch == 1e-10
    mixed = Thresholds.of(settings, "bf16-mixed")
    assert mixed.mixed and mixed.torch_rtol() == mixed.torch_atol_zero() == 5e-2


def test_a_mixed_precision_checks_torch_under_autocast_and_skips_numpy():
    mixed = Thresholds.of(GradcheckSettings(), "bf16-mixed")
    options = BackendOptions(precision="bf16-mixed")
    cases = layer_cases("conv")[:2] + layer_cases("relu")
    backends = [BACKENDS["im2col"], BACKENDS["torch"]]
    records = [r for batch in check_layers(cases, backends, 0, mixed, options) for r in batch]
    skipped = [r for r in records if r.skipped]
    assert {(r.backend, r.layer) for r in skipped} == {("im2col", "conv"), ("im2col", "relu")}
    assert {r.reason for r in skipped} == {
        "trainer.precision=bf16-mixed needs a torch backend (numpy has no autocast)"
    }
    ran = [r for r in records if not r.skipped]
    # Output and every gradient against float64 torch; no differences of a 16-bit forward.
    assert {(r.layer, r.tensor) for r in ran} == {
        ("conv", "out"), ("conv", "x"), ("conv", "w"), ("conv", "b"), ("relu", "out"), ("relu", "x")
    }  # fmt: skip
    assert all(r.backend == "torch" and r.reference == "torch" for r in ran)
    assert all(r.passed and r.threshold == 5e-2 for r in ran)
    # The conv ran in bfloat16 (float32 would be within 1e-6), the ReLU in float32.
    assert 1e-4 < max(r.rel_error for r in ran if r.layer == "conv") < 1e-2
    assert max(r.rel_error for r in ran if r.layer == "relu") < 1e-6
