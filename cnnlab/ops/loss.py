"""The loss: softmax cross-entropy, mean over the batch (``layer=softmax`` in gradcheck).

Nets call it themselves after their last layer, so it has no layer class; it is registered for
its gradient check and bench case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnlab.ops.cases import Arrays, Bench, Check, LayerCase
from cnnlab.ops.registry import LayerKind, register

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.kernels.protocol import KernelSet


@dataclass(frozen=True)
class LossCheck(Check):
    """Logits of shape ``x`` = (N, K), scaled by 2, and N labels in [0, K)."""

    def case(self, kind: LayerKind) -> LayerCase:
        n, classes = self.x

        def make(rng: np.random.Generator) -> Arrays:
            return {
                "logits": rng.standard_normal((n, classes)) * 2,
                "y": rng.integers(0, classes, size=n),
            }

        def forward(kernels: KernelSet, a: Arrays) -> tuple[Any, Any]:
            import numpy as np

            loss, dlogits = kernels.softmax_cross_entropy(a["logits"], a["y"])
            return np.asarray(loss), dlogits

        def backward(kernels: KernelSet, dlogits: Any, dout: Any) -> tuple[Any, ...]:
            # The loss is the network's end: its "cache" is dL/dlogits, scaled by the upstream
            # dout.
            return (dlogits * dout,)

        return LayerCase(kind.name, self.variant, make, ("logits",), forward, backward)


SOFTMAX = register(
    LayerKind(
        "softmax",
        None,
        "softmax_cross_entropy",
        inputs=("logits",),
        pair=False,
        checks=(LossCheck("8 samples, 7 classes", None, (8, 7)),),
        bench=(Bench("softmax", None, (64, 10)),),
    )
)
