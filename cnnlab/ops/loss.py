"""The loss: softmax cross-entropy, mean over the batch (``layer=softmax`` in gradcheck).

Nets call it themselves after their last layer, so it has no layer class; it is registered for
its gradient checks (plain, and with label smoothing ε = 0.1) and bench case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cnnlab.ops.registry import Arrays, Bench, Check, LayerCase, LayerKind, register

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.kernels.protocol import KernelSet


def _case(smoothing: float = 0.0) -> Callable[[LayerKind, Check], LayerCase]:
    """The case builder of the loss with label smoothing ``smoothing``: logits of shape
    ``check.x`` = (N, K), scaled by 2, and N labels in [0, K)."""

    def build(kind: LayerKind, check: Check) -> LayerCase:
        n, classes = check.x

        def make(rng: np.random.Generator) -> Arrays:
            return {
                "logits": rng.standard_normal((n, classes)) * 2,
                "y": rng.integers(0, classes, size=n),
            }

        def forward(kernels: KernelSet, a: Arrays) -> tuple[Any, Any]:
            import numpy as np

            loss, dlogits = kernels.softmax_cross_entropy(a["logits"], a["y"], smoothing=smoothing)
            return np.asarray(loss), dlogits

        def backward(kernels: KernelSet, dlogits: Any, dout: Any) -> tuple[Any, ...]:
            # The loss is the network's end: its "cache" is dL/dlogits, scaled by the upstream
            # dout.
            return (dlogits * dout,)

        return LayerCase(kind.name, check.variant, make, ("logits",), forward, backward)

    return build


SOFTMAX = register(
    LayerKind(
        "softmax",
        None,
        "softmax_cross_entropy",
        inputs=("logits",),
        pair=False,
        checks=(
            Check("8 samples, 7 classes", None, (8, 7), build=_case()),
            Check("8 samples, 7 classes, smoothing 0.1", None, (8, 7), build=_case(0.1)),
        ),
        bench=(Bench("softmax", None, (64, 10)),),
    )
)
