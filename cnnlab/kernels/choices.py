"""Named choices every backend accepts, checked in one place so the errors read the same."""

from __future__ import annotations

from cnnlab.errors import UsageError

# Max-pool tie rules: "first" sends a window's gradient to its first maximum in row-major order
# (as PyTorch), "all" to every maximum.
TIES = ("first", "all")
# Batch norm's backward passes: "staged" through dvar and dmean step by step, "fused" by the
# closed form dx = inv_std/m * (m*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat)).
BATCHNORM_BACKWARDS = ("staged", "fused")


def check_ties(ties: str) -> None:
    """Raise UsageError unless ``ties`` is one of :data:`TIES`."""
    if ties not in TIES:
        raise UsageError(f"maxpool2d: ties must be one of {', '.join(TIES)}, got {ties!r}")


def check_batchnorm_backward(mode: str) -> None:
    """Raise UsageError unless ``mode`` is one of :data:`BATCHNORM_BACKWARDS`."""
    if mode not in BATCHNORM_BACKWARDS:
        raise UsageError(
            f"batchnorm backward must be one of {', '.join(BATCHNORM_BACKWARDS)}, got {mode!r}"
        )
