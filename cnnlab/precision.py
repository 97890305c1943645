"""Numeric precision of a run (``trainer.precision``), under PyTorch Lightning's names.

``32-true`` and ``64-true`` keep every array (data, weights, activations, gradients) in float32
or float64, on any backend. The mixed precisions keep weights, optimizer state and the loss in
float32 and run the layers that gain from it (convs, matrix products) in a 16-bit type under
torch's autocast: ``bf16-mixed`` (bfloat16, on the CPU and on CUDA) and ``16-mixed`` (float16, on
CUDA only, whose 5-bit exponent needs the loss scaled so that small gradients do not underflow).
numpy has no autocast: the numpy backends run the true precisions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cnnlab.choice import Choice
from cnnlab.errors import UsageError

if TYPE_CHECKING:
    import torch


class _Formats(Choice):
    """The behaviour of ``trainer.precision``'s members (the enum itself is made below, so that
    its members' names are the values, "32-true" included, as OmegaConf matches names)."""

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the data, the weights and (true precisions) every activation."""
        return np.dtype(np.float64 if self.value == "64-true" else np.float32)

    @property
    def mixed(self) -> bool:
        """Whether layers run in a 16-bit type under autocast (torch backends only)."""
        return self.value.endswith("-mixed")

    @property
    def scaled(self) -> bool:
        """Whether the loss is scaled for the backward pass (float16's narrow exponent)."""
        return self.value == "16-mixed"

    @property
    def reference(self) -> Precision:
        """The true precision of the same storage dtype: what a mixed result is compared with
        (``32-true`` for both mixed precisions)."""
        return Precision("64-true" if self.value == "64-true" else "32-true")

    @property
    def tolerance(self) -> float:
        """The relative error accepted against torch in the reference precision
        (:data:`TOLERANCE`)."""
        return TOLERANCE[self.value]

    def autocast_dtype(self) -> torch.dtype | None:
        """The 16-bit type autocast runs layers in, or None for a true precision."""
        import torch

        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.value)

    def unsupported(self, framework: str, device: str) -> str | None:
        """Why this precision cannot run on a backend of ``framework`` on ``device``, or None."""
        if self.mixed and framework != "torch":
            return f"trainer.precision={self.value} needs a torch backend (numpy has no autocast)"
        if self.scaled and device != "cuda":
            return (
                "trainer.precision=16-mixed runs on CUDA only; on the CPU use "
                "trainer.precision=bf16-mixed"
            )
        return None


NAMES = ("32-true", "64-true", "bf16-mixed", "16-mixed")
Precision = _Formats("Precision", [(name, name) for name in NAMES])
"""``trainer.precision``: the number formats of a run (``Precision("bf16-mixed")``)."""

# The tolerance of a comparison against float32 torch in each precision: bfloat16 keeps 8 bits
# of mantissa (relative rounding 2^-9), float16 11 bits (2^-12); errors grow with depth.
TOLERANCE = {"32-true": 1e-4, "64-true": 1e-10, "bf16-mixed": 5e-2, "16-mixed": 1e-2}

# trainer.dtype, before trainer.precision: what each value is now.
FROM_DTYPE = {"float32": "32-true", "float64": "64-true"}


def dtype_now(value: object = None) -> str:
    """What an old ``trainer.dtype`` setting is to be written as now, to follow the key's
    name in a one-line error: ``is now trainer.precision: write trainer.precision=64-true``."""
    now = FROM_DTYPE.get(str(value))
    if now is not None:
        return f"is now trainer.precision: write trainer.precision={now}"
    return (
        "is now trainer.precision: write trainer.precision=32-true for float32 or 64-true for "
        "float64"
    )


def from_dtype(value: str) -> Precision:
    """The precision an old ``trainer.dtype`` value means (runs saved before precision)."""
    try:
        return Precision(FROM_DTYPE[str(value)])
    except KeyError:
        raise UsageError(f"trainer.dtype={value} is not float32 or float64") from None
