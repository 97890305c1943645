"""Named choices every backend accepts, so that each reads them the same way."""

from __future__ import annotations

from cnnlab.choice import Choice


class Ties(Choice):
    """Max-pool tie rules: ``first`` sends a window's gradient to its first maximum in
    row-major order (as PyTorch), ``all`` to every maximum."""

    first = "first"
    all = "all"


class BatchNormBackward(Choice):
    """Batch norm's backward passes: ``staged`` through dvar and dmean step by step, ``fused``
    by the closed form ``dx = inv_std/m * (m*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat))``."""

    staged = "staged"
    fused = "fused"
