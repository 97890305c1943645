"""The numeric gradient (cnnlab.gradcheck.numeric) and the relative error (cnnlab.compare)."""

from __future__ import annotations

import numpy as np

from cnnlab.compare import compare
from cnnlab.gradcheck.numeric import numeric_gradient


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
