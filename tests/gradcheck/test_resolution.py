"""A numeric reference's resolution: centred differences of a loss L resolve no less than one ulp
of L over 2h per coordinate, so the gate never assumes less error than that, and a gradient
within ten times that is zero to it (as model checks set it, from their loss)."""

from __future__ import annotations

import numpy as np

from cnnlab.gradcheck.numeric import NumericReference
from cnnlab.gradcheck.run import Thresholds, compared_numeric
from cnnlab.schema import GradcheckSettings

T = Thresholds.of(GradcheckSettings())
WHERE = {"target": "model", "layer": None, "model": "m", "variant": ""}
# A loss near 2 differenced at h = 1e-6 over 3 coordinates: an ulp over 2h, 2.2e-10, each.
RESOLUTION = float(np.spacing(2.0)) / (2 * T.step) * np.sqrt(3)
GRAD = np.array([-0.00884661, 0.0032151, 0.00141654])  # a batch norm's gamma in DenseNet's check


def passed(analytic, numeric, error: float, resolution: float) -> bool:
    ref = NumericReference(np.asarray(analytic), np.asarray(numeric), error, "3", resolution)
    return compared_numeric(WHERE, "b", "t", ref, T).passed


def test_differences_that_round_alike_are_judged_at_the_resolution():
    # D(h) and D(2h) agree exactly (error 0), one ulp over 2h from the truth: 2e-8 relative.
    numeric = GRAD + np.array([2.2e-10, 0, 0])
    assert not passed(GRAD, numeric, 0.0, 0.0)  # judged at rtol_floor alone
    assert passed(GRAD, numeric, 0.0, RESOLUTION)


def test_a_wrong_gradient_fails_whatever_the_resolution():
    assert not passed(GRAD * 1.001, GRAD, 0.0, RESOLUTION)
    assert not passed(np.zeros(3), GRAD, 0.0, RESOLUTION)  # a gradient left out


def test_a_true_zero_against_rounding_is_a_zero_gradient():
    """A norm's beta whose shift the next norm removes: analytic ~1e-17, differences 1-2 ulps."""
    analytic, numeric = [1e-17, 0.0, -2e-17], [2.2e-10, 0.0, -4.4e-10]
    assert not passed(analytic, numeric, 6.6e-10, 0.0)  # atol_zero (1e-10) alone
    assert passed(analytic, numeric, 6.6e-10, RESOLUTION)
    # Differences beyond ten times the resolution are a gradient, not rounding.
    assert not passed(analytic, [1e-8, 0.0, 0.0], 0.0, RESOLUTION)
