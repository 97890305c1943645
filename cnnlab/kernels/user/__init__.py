"""The ``user`` kernel set: a user's own layers (CS231n or EECS 498 style) behind cnnlab's pairs.

:class:`UserKernels` offers the kernel-set contract of :mod:`cnnlab.kernels.protocol` and
answers each pair by calling the user's function for that layer in a worker process
(:mod:`.worker`), translating arguments both ways: cnnlab's ``stride`` and ``pad`` become a
``conv_param`` dict, a linear layer's (M, D) weight the convention's (D, M) one, a
per-channel gamma a (1, C, 1, 1) one, cnnlab's batch-norm momentum (the weight of the new batch,
as torch) the convention's (the weight of the old running value). What the convention cannot
express (a conv with groups, a pool with padding, a layer it has no name for) and what the
file does not define raise :class:`~cnnlab.errors.KernelMissingError` naming the function, which
checks and benches show as a skipped row.

Reshaping (flatten) and combining branches (residual sums, concatenation, gating) are no layer
a student writes: those come from cnnlab's own numpy kernels, so that any model whose layers
the file defines can train, and checks do not list them as the user's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.backends import UserSource
from cnnlab.errors import KernelMissingError, UsageError, UserCodeError
from cnnlab.kernels.common import combine, linear
from cnnlab.kernels.common.dropout import check_p
from cnnlab.kernels.contract import install
from cnnlab.kernels.geometry import IntPair, conv_geometry, pair, pool_geometry
from cnnlab.kernels.protocol import PAIRS
from cnnlab.kernels.user.conventions import CONVENTIONS, Convention, recognise
from cnnlab.kernels.user.worker import Handle, Worker

# Relative error within which dropout's output and gradient, and batch norm's running
# statistics, follow the convention's rule.
RULE_RTOL = 1e-6
# Kernels that are cnnlab's own on this backend: no layer of a course's file.
BORROWED = {"flatten": linear, "add": linear, "concat": combine, "channel_gate": combine}


def _known_names() -> str:
    first = [pairs[0][0] for c in CONVENTIONS for pairs in c.layers.values()]
    return ", ".join(first[:3]) + ", ..."


class UserKernels:
    """The ``user`` backend's kernels: a user's layer code in a worker process.

    Args:
        source: the file or module, and the time limit of each call.
    """

    def __init__(self, source: UserSource) -> None:
        self.source = source
        self.worker = Worker(source)
        self.defined = set(self.worker.names())
        convention = recognise(self.defined)
        if convention is None:
            raise UsageError(
                f"{source.describe()} defines none of the layers cnnlab knows (such as "
                f"{_known_names()}); see README, 'Check your own layers'"
            )
        self.convention: Convention = convention
        self.worker.tensors = convention.tensors

    def __repr__(self) -> str:
        return f"{self.source.describe()} ({self.convention.name})"

    def close(self) -> None:
        """Stop the worker process."""
        self.worker.close()

    def busy_seconds(self) -> float:
        """Seconds the user's functions ran since the last call, timed in the worker."""
        return self.worker.take_busy()

    # -- which functions ---------------------------------------------------------------------

    def functions(self, layer: str) -> tuple[str, str]:
        """The ``(forward, backward)`` names the file defines for a layer of the convention,
        or KernelMissingError naming what it should define."""
        lacking = self._lacking(layer)
        if lacking:
            raise KernelMissingError(self._not_defined(lacking))
        pairs = self.convention.layers[layer]
        return next(p for p in pairs if p[0] in self.defined and p[1] in self.defined)

    def _lacking(self, layer: str) -> list[str]:
        pairs = self.convention.layers.get(layer)
        if pairs is None:
            raise KernelMissingError(f"no such layer in the {self.convention.name} convention")
        if any(f in self.defined and b in self.defined for f, b in pairs):
            return []
        return [f for f in pairs[0] if f not in self.defined]

    def _not_defined(self, names: list[str]) -> str:
        return f"not in your file: {', '.join(names)}"

    def skips(self, kernel: str) -> str | None:
        """Why a registered kernel is not the user's to check, or None when it is."""
        if kernel in BORROWED:
            return "cnnlab's own kernel on this backend: nothing of yours to check"
        try:
            lacking = self.missing(kernel)
        except KernelMissingError as exc:
            return str(exc)
        return self._not_defined(lacking) if lacking else None

    def missing(self, kernel: str) -> list[str]:
        """The functions the file lacks for a registered kernel (none for cnnlab's own), or
        KernelMissingError where the convention has no such layer."""
        if kernel in BORROWED:
            return []
        if kernel == "softmax_cross_entropy":
            return [] if self._loss() else [self.convention.loss[0]]
        if kernel == "batchnorm":  # either form will do: x's shape picks it
            dense, spatial = self._lacking("batchnorm"), self._lacking("spatial_batchnorm")
            return dense + spatial if dense and spatial else []
        return self._lacking(kernel)

    def _loss(self) -> str | None:
        return next((f for f in self.convention.loss if f in self.defined), None)

    def _forward(self, layer: str, args: list[Any]) -> tuple[Any, Handle, list[dict], str]:
        forward, backward = self.functions(layer)
        out, handle, dicts = self.worker.forward(forward, args)
        return np.asarray(out), handle, dicts, backward

    def _backward(self, name: str, dout: np.ndarray, handle: Handle) -> Any:
        return self.worker.backward(name, np.ascontiguousarray(dout), handle)

    # -- the layers --------------------------------------------------------------------------

    def conv2d_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        stride: IntPair = 1,
        pad: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> tuple[np.ndarray, Any]:
        b_shape = None if b is None else b.shape
        conv_geometry(x.shape, w.shape, b_shape, stride, pad, dilation, groups)
        (sh, sw), (ph, pw) = pair(stride), pair(pad)
        forward = self.functions("conv2d")[0]
        if groups != 1 or pair(dilation) != (1, 1):
            raise KernelMissingError(f"{forward}: conv_param has no groups or dilation")
        if sh != sw or ph != pw:
            raise KernelMissingError(
                f"{forward}: conv_param has one stride and one pad for H and W"
            )
        bias = np.zeros(w.shape[0], x.dtype) if b is None else b
        args = [x, w, bias, {"stride": sh, "pad": ph}]
        out, handle, _, backward = self._forward("conv2d", args)
        return out, (handle, backward, b is None)

    def conv2d_backward(
        self, dout: np.ndarray, cache: Any, need_dx: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        handle, backward, no_bias = cache
        dx, dw, db = self._backward(backward, dout, handle)
        return (dx if need_dx else None), dw, (None if no_bias else db)

    def maxpool2d_forward(
        self,
        x: np.ndarray,
        kernel: IntPair,
        stride: IntPair | None = None,
        pad: IntPair = 0,
        ties: str = "first",
        ceil_mode: bool = False,
    ) -> tuple[np.ndarray, Any]:
        (kh, kw), (sh, sw), p, _ = pool_geometry(
            "maxpool2d", x.shape, kernel, stride, pad, ceil_mode
        )
        forward = self.functions("maxpool2d")[0]
        if p != (0, 0) or ceil_mode:
            raise KernelMissingError(f"{forward}: pool_param has no padding or ceil_mode")
        if sh != sw:
            raise KernelMissingError(f"{forward}: pool_param has one stride for H and W")
        if ties != "first":
            raise KernelMissingError(f"{forward}: ties={ties} is cnnlab's option, not the course's")
        args = [x, {"pool_height": kh, "pool_width": kw, "stride": sh}]
        out, handle, _, backward = self._forward("maxpool2d", args)
        return out, (handle, backward)

    def maxpool2d_backward(self, dout: np.ndarray, cache: Any) -> np.ndarray:
        handle, backward = cache
        return np.asarray(self._backward(backward, dout, handle))

    def relu_forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        out, handle, _, backward = self._forward("relu", [x])
        return out, (handle, backward)

    def relu_backward(self, dout: np.ndarray, cache: Any) -> np.ndarray:
        handle, backward = cache
        return np.asarray(self._backward(backward, dout, handle))

    def linear_forward(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        linear.check_linear(x.shape, w.shape, None if b is None else b.shape)
        bias = np.zeros(w.shape[0], x.dtype) if b is None else b
        # The course's affine weight is (D, M): x @ w + b.
        out, handle, _, backward = self._forward("linear", [x, np.ascontiguousarray(w.T), bias])
        return out, (handle, backward, b is None)

    def linear_backward(
        self, dout: np.ndarray, cache: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        handle, backward, no_bias = cache
        dx, dw, db = self._backward(backward, dout, handle)
        return dx, np.ascontiguousarray(dw.T), (None if no_bias else db)

    def batchnorm_forward(
        self,
        x: np.ndarray,
        gamma: np.ndarray,
        beta: np.ndarray,
        running_mean: np.ndarray,
        running_var: np.ndarray,
        train: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> tuple[np.ndarray, Any]:
        layer = "batchnorm" if x.ndim == 2 else "spatial_batchnorm"
        bn_param = {
            "mode": "train" if train else "test",
            "eps": eps,
            # The course's momentum weighs the old running value; cnnlab's (torch's) the batch.
            "momentum": 1 - momentum,
            "running_mean": running_mean.copy(),
            "running_var": running_var.copy(),
        }
        out, handle, (after,), backward = self._forward(layer, [x, gamma, beta, bn_param])
        if train:
            _check_running(self.functions(layer)[0], x, bn_param, after)
        running_mean[...] = after["running_mean"]
        running_var[...] = after["running_var"]
        return out, (handle, backward, layer, train)

    def batchnorm_backward(
        self, dout: np.ndarray, cache: Any, mode: str = "fused"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        handle, backward, layer, train = cache
        if not train:
            raise KernelMissingError(
                f"{backward}: the course's batch norm has no test-mode backward"
            )
        if mode == "fused" and layer == "batchnorm":
            backward = self.convention.fused_batchnorm
            if backward not in self.defined:
                raise KernelMissingError(self._not_defined([backward]))
        dx, dgamma, dbeta = self._backward(backward, dout, handle)
        return dx, dgamma, dbeta

    def layernorm_forward(
        self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
    ) -> tuple[np.ndarray, Any]:
        forward = self.functions("layernorm")[0]
        if x.ndim != 2:
            raise KernelMissingError(f"{forward}: the course's layer norm takes x of shape (N, D)")
        out, handle, _, backward = self._forward("layernorm", [x, gamma, beta, {"eps": eps}])
        return out, (handle, backward)

    def layernorm_backward(
        self, dout: np.ndarray, cache: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        handle, backward = cache
        dx, dgamma, dbeta = self._backward(backward, dout, handle)
        return dx, dgamma, dbeta

    def groupnorm_forward(
        self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float = 1e-5
    ) -> tuple[np.ndarray, Any]:
        C = x.shape[1]
        args = [x, gamma.reshape(1, C, 1, 1), beta.reshape(1, C, 1, 1), groups, {"eps": eps}]
        out, handle, _, backward = self._forward("groupnorm", args)
        return out, (handle, backward)

    def groupnorm_backward(
        self, dout: np.ndarray, cache: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        handle, backward = cache
        dx, dgamma, dbeta = self._backward(backward, dout, handle)
        return dx, np.reshape(dgamma, -1), np.reshape(dbeta, -1)

    # Dropout draws its own mask, from dropout_param's seed: cnnlab's mask only seeds it (the
    # same mask gives the same seed, so a run stays reproducible), and what is checked is the
    # convention's rule, out = x * m / keep for a 0/1 mask m, and its backward with that m.
    own_randomness = frozenset({"dropout"})

    def dropout_forward(self, x: np.ndarray, mask: np.ndarray, p: float) -> tuple[np.ndarray, Any]:
        check_p(p)
        keep = 1.0 - p
        seed = int.from_bytes(np.packbits(mask.ravel()[:256]).tobytes()[:4], "little")
        param = {"p": keep if self.convention.keep_p else p, "mode": "train", "seed": seed}
        out, handle, _, backward = self._forward("dropout", [x, param])
        kept = _rule("dropout", out, x, keep)
        return out, (handle, backward, kept, keep)

    def dropout_backward(self, dout: np.ndarray, cache: Any) -> np.ndarray:
        handle, backward, kept, keep = cache
        dx = np.asarray(self._backward(backward, dout, handle))
        if not np.allclose(dx, dout * kept / keep, rtol=RULE_RTOL, atol=0):
            raise UserCodeError(f"{backward}: dx is not dout * mask / keep for its forward's mask")
        return dx

    def softmax_cross_entropy(
        self, logits: np.ndarray, y: np.ndarray, smoothing: float = 0.0
    ) -> tuple[float, np.ndarray]:
        name = self._loss()
        if name is None:
            raise KernelMissingError(self._not_defined([self.convention.loss[0]]))
        if smoothing:
            # Smoothing added here would be cnnlab's arithmetic, not the file's, in what is
            # checked and trained as the user's loss.
            raise KernelMissingError(f"{name}(x, y) takes hard labels: no label smoothing")
        (loss, dlogits), _ = self.worker.call(name, [logits, y])
        return float(loss), np.asarray(dlogits, dtype=logits.dtype)


def _rule(layer: str, out: np.ndarray, x: np.ndarray, keep: float) -> np.ndarray:
    """The 0/1 mask of inverted dropout's output, out = x * mask / keep; UserCodeError when
    out is not of that form or keeps a share of units far from ``keep``."""
    kept = out != 0
    # The rule checks the form, out = x * m / keep, not the rounding: float32 masks pass.
    if not np.allclose(out, x * kept / keep, rtol=RULE_RTOL, atol=0):
        raise UserCodeError(f"{layer}: out is not x * mask / keep for a 0/1 mask (keep = {keep})")
    n = kept.size
    share = kept.sum() / max(n, 1)
    # Six standard deviations of a binomial share: a wrong rate, not bad luck.
    if n >= 100 and abs(share - keep) > 6 * np.sqrt(keep * (1 - keep) / n) + 1 / n:
        raise UserCodeError(f"{layer}: keeps {share:.1%} of the units, not {keep:.1%}")
    return kept


def _check_running(forward: str, x: np.ndarray, before: dict, after: dict) -> None:
    """The running statistics the user's forward left in bn_param follow the course's rule,
    ``running = momentum * running + (1 - momentum) * batch``, with the biased variance."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    m = before["momentum"]
    batch = {"running_mean": x.mean(axis=axes), "running_var": x.var(axis=axes)}
    for key, value in batch.items():
        want = m * before[key] + (1 - m) * value
        got = after.get(key)
        if got is None or np.shape(got) != want.shape:
            raise UserCodeError(f"{forward}: bn_param['{key}'] was not updated")
        if not np.allclose(got, want, rtol=RULE_RTOL, atol=1e-12):
            raise UserCodeError(
                f"{forward}: bn_param['{key}'] is not momentum * running + (1 - momentum) * "
                f"the batch's {'mean' if key == 'running_mean' else 'biased variance'}"
            )


def _borrowed(kernel: str, module: Any) -> None:
    setattr(UserKernels, f"{kernel}_forward", staticmethod(getattr(module, f"{kernel}_forward")))
    setattr(UserKernels, f"{kernel}_backward", staticmethod(getattr(module, f"{kernel}_backward")))


def _missing(kernel: str) -> None:
    def forward(self: UserKernels, *args: Any, **kwargs: Any) -> Any:
        raise KernelMissingError(f"no such layer in the {self.convention.name} convention")

    setattr(UserKernels, f"{kernel}_forward", forward)
    setattr(UserKernels, f"{kernel}_backward", forward)


for _kernel, _module in BORROWED.items():
    _borrowed(_kernel, _module)
for _kernel in PAIRS:
    if not hasattr(UserKernels, f"{_kernel}_forward"):
        _missing(_kernel)
# The input contract every kernel set keeps (cnnlab.kernels.contract), as the numpy sets do.
install(UserKernels, PAIRS)
