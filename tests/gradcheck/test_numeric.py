"""Numeric differences and their error estimate (cnnlab.gradcheck.numeric), the numeric gate
(cnnlab.gradcheck.run) and the relative error (cnnlab.compare)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cnnlab.compare import compare
from cnnlab.config import compose
from cnnlab.gradcheck.numeric import directional_derivatives, numeric_gradient, numeric_reference
from cnnlab.gradcheck.run import Thresholds, compared_numeric
from cnnlab.schema import GradcheckSettings


def test_numeric_gradient_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    grad = numeric_gradient(lambda v: float(np.sum(v**3)), x.copy(), 1e-6)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-9)


def test_numeric_gradient_restores_its_input():
    x = np.arange(6.0).reshape(2, 3)
    copy = x.copy()
    numeric_gradient(lambda v: float(v.sum()), x, 1e-3)
    np.testing.assert_array_equal(x, copy)


def test_relative_error_formula():
    a, n = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 2.3])
    cmp = compare(a, n)
    expected = 0.3 / (3.0 + np.linalg.norm(n))
    assert np.isclose(cmp.rel_error, expected)
    assert np.isclose(cmp.worst_abs, 0.3) and cmp.worst_index == (2,)
    assert cmp.passed(rtol=0.1, atol_zero=1e-10)
    assert not cmp.passed(rtol=1e-3, atol_zero=1e-10)


def test_zero_gradient_is_judged_by_absolute_error():
    zero, tiny = np.zeros(4), np.full(4, 1e-13)
    cmp = compare(zero, tiny)
    assert cmp.zero and cmp.rel_error > 0.1  # large, and meaningless, at this scale
    assert cmp.passed(rtol=1e-8, atol_zero=1e-10)
    assert not compare(zero, np.full(4, 1e-9)).zero


def test_directional_derivatives_are_projections_of_the_gradient():
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 3, 4))
    derivs = directional_derivatives(lambda u: float(np.sum(u**3)), x, v, 1e-6)
    expected = np.tensordot(v, 3 * x**2, axes=2)
    np.testing.assert_allclose(derivs, expected, rtol=1e-8)


def cube(v: np.ndarray) -> float:
    return float(np.sum(v**3))


def test_the_error_estimate_of_a_truncation_error():
    # ((x+h)^3 - (x-h)^3) / 2h = 3x^2 + h^2 exactly: D(h) - D(2h) = -3h^2, three times the
    # error of D(h) itself. A large h makes truncation, not rounding, the error.
    x, h = np.array([0.5, -1.0, 2.0]), 1e-2
    ref = numeric_reference(cube, x, 3 * x**2, h)
    true_error = np.linalg.norm(ref.numeric - 3 * x**2)
    assert np.isclose(true_error, h**2 * np.sqrt(3), rtol=1e-6)
    assert np.isclose(ref.error, 3 * true_error, rtol=1e-6)
    assert ref.method == "elements"
    np.testing.assert_array_equal(ref.analytic, 3 * x**2)


def test_a_reference_along_directions():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3))
    directions = rng.standard_normal((4, 2, 3))
    ref = numeric_reference(cube, x, 3 * x**2, 1e-6, directions)
    assert ref.method == "4 directions" and ref.numeric.shape == (4,)
    np.testing.assert_allclose(ref.analytic, np.tensordot(directions, 3 * x**2, axes=2))
    assert np.linalg.norm(ref.analytic - ref.numeric) < 10 * ref.error + 1e-9


THRESHOLDS = Thresholds.of(GradcheckSettings())


def test_the_numeric_tolerance_follows_the_estimate_between_floor_and_cap():
    t = THRESHOLDS
    assert t.numeric_rtol(0.0) == t.rtol_floor
    assert t.numeric_rtol(1e-8) == pytest.approx(t.rtol_floor + t.error_factor * 1e-8)
    assert t.numeric_rtol(1.0) == t.rtol_numeric  # differences across a kink excuse nothing


def test_a_numeric_record_shows_its_tolerance():
    # h = 1e-4: a truncation error of h^2 (rel. error 7e-10) that rounding does not blur.
    t = dataclasses.replace(THRESHOLDS, step=1e-4)
    x = np.array([0.5, -1.0, 2.0])
    where = {"target": "layer", "layer": "cube", "model": None, "variant": ""}
    good = compared_numeric(where, "b", "x", numeric_reference(cube, x, 3 * x**2, t.step), t)
    assert good.passed and good.rel_error <= good.threshold
    assert good.fd_error == pytest.approx(3 * good.rel_error, rel=1e-2)
    assert good.threshold == pytest.approx(t.numeric_rtol(good.fd_error))
    assert good.method == "elements" and good.step == t.step
    wrong = numeric_reference(cube, x, 3 * x**2 * (1 + 1e-7), t.step)
    bad = compared_numeric(where, "b", "x", wrong, t)
    assert not bad.passed and bad.rel_error > bad.threshold


def test_the_config_file_sets_the_schema_defaults():
    # The tests judge with GradcheckSettings(); cnnlab gradcheck with conf/gradcheck.yaml.
    assert Thresholds.of(compose("gradcheck", []).gradcheck) == THRESHOLDS
