"""Named choices every backend accepts, checked in one place so the errors read the same."""

from __future__ import annotations

from cnnlab.errors import UsageError

TIES = ("first", "all")  # max-pool tie rules (DESIGN §4)
BATCHNORM_BACKWARDS = ("staged", "fused")  # batch-norm backward passes (DESIGN §4)


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
