"""The numeric gate on a wide layer: a 256-channel 3x3 conv, which ``layer=all`` does not hold.

Element by element its dw alone would take some 2.4 million evaluations of the layer; along
random directions the whole case takes 96 per backend. The gate must pass it whatever the
seed (the differences' own error reaches 1e-8 here, in db: the old fixed gate's tolerance)
and still fail a gradient that is 1% off, has one term with the wrong sign, or misses one.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable

import numpy as np
import pytest

from cnnlab.backends import BACKENDS
from cnnlab.gradcheck.run import Thresholds, check_layer_case
from cnnlab.ops.cases import layer_case
from cnnlab.ops.conv import CONV, Conv2d
from cnnlab.ops.registry import Check
from cnnlab.schema import GradcheckSettings
from tests.cli import run_cnnlab

THRESHOLDS = Thresholds.of(GradcheckSettings())  # the defaults of the config
WIDE = layer_case(CONV, Check("3x3, 256 channels, pad 1", Conv2d(256, 3, 1, 1), (2, 256, 8, 8)))
INDEX = 1000  # any index outside layer=all's: it only seeds the arrays


@pytest.fixture(scope="module")
def torch_reference():
    return BACKENDS["torch"].kernels()


# About 1 s a seed on 2 idle cores, but 30 s when other jobs contend for them: CI runs the
# first 2 seeds, all 20 run by hand (pytest -m slow).
SEEDS = [pytest.param(s, marks=[pytest.mark.slow] if s >= 2 else []) for s in range(20)]


@pytest.mark.parametrize("seed", SEEDS)
def test_wide_conv_passes_on_im2col_and_torch(seed, torch_reference):
    kernel_sets = {name: BACKENDS[name].kernels() for name in ("im2col", "torch")}
    records = check_layer_case(WIDE, INDEX, seed, kernel_sets, torch_reference, THRESHOLDS)
    failed = [r for r in records if not r.passed]
    assert not failed, [
        (r.backend, r.tensor, r.reference, r.rel_error, r.threshold) for r in failed
    ]
    numeric = [r for r in records if r.reference == "numeric"]
    # Every tensor along directions: what keeps the check at seconds, not hours.
    assert {(r.backend, r.tensor, r.method) for r in numeric} == {
        (b, t, "8 directions") for b in ("im2col", "torch") for t in ("x", "w", "b")
    }
    assert all(r.rel_error <= r.threshold < THRESHOLDS.rtol_numeric for r in numeric)


Mutation = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple]


def _broken(change: Mutation) -> types.SimpleNamespace:
    """im2col's kernels with the conv backward's gradients changed: ``change(dout, dx, dw, db)``
    returns the (dx, dw, db) to give."""
    im2col = BACKENDS["im2col"].kernels()

    def backward(dout, cache, **kwargs):
        return change(dout, *im2col.conv2d_backward(dout, cache, **kwargs))

    return types.SimpleNamespace(conv2d_forward=im2col.conv2d_forward, conv2d_backward=backward)


def _first_filter_negated(dw: np.ndarray) -> np.ndarray:
    return np.concatenate([-dw[:1], dw[1:]])


# Each with the tensor it breaks. The last one is 5e-7 relative: caught by the error-aware
# tolerance (some 1e-8 here), not by the cap rtol_numeric (1e-6).
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "dw scaled by 1.01": (lambda dout, dx, dw, db: (dx, dw * 1.01, db), "w"),
    "dw of one filter negated": (lambda dout, dx, dw, db: (dx, _first_filter_negated(dw), db), "w"),
    "db negated": (lambda dout, dx, dw, db: (dx, dw, -db), "b"),
    "db missing the second image's term": (
        lambda dout, dx, dw, db: (dx, dw, db - dout[1].sum(axis=(1, 2))),
        "b",
    ),
    "dx scaled by 1 + 1e-6": (lambda dout, dx, dw, db: (dx * (1 + 1e-6), dw, db), "x"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_wrong_wide_gradient_fails(mutation, torch_reference):
    change, tensor = MUTATIONS[mutation]
    kernel_sets = {"broken": _broken(change)}
    records = check_layer_case(WIDE, INDEX, 0, kernel_sets, torch_reference, THRESHOLDS)
    failed = {(r.tensor, r.reference) for r in records if not r.passed}
    assert failed == {(tensor, "numeric"), (tensor, "torch")}


def test_the_command_checks_along_directions_past_elementwise_max(tmp_path):
    result = run_cnnlab(
        "gradcheck",
        "layer=conv",
        "backends=[im2col]",
        "gradcheck.elementwise_max=300",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The table shows each row's record nearest its tolerance, which may be an element-wise
    # one on another machine; the records say how every tensor was checked.
    (path,) = tmp_path.glob("outputs/*/*/gradcheck.json")
    numeric = [r for r in json.loads(path.read_text()) if r["reference"] == "numeric"]
    # Cases over 300 elements (inputs and parameters together) along directions, the others
    # element-wise.
    methods = {r["variant"]: r["method"] for r in numeric}
    sizes = {
        check.variant: sum(
            a.size for a in layer_case(CONV, check).make(np.random.default_rng(0)).values()
        )
        for check in CONV.checks
    }
    assert min(sizes.values()) <= 300 < max(sizes.values())
    assert methods == {v: "8 directions" if n > 300 else "elements" for v, n in sizes.items()}
    assert all(r["rel_error"] <= r["threshold"] and r["fd_error"] > 0 for r in numeric)
