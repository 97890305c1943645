"""Run a layer tree on a numpy kernel set (``naive`` or ``im2col``): forward, then backward.

Each leaf type has one forward/backward pair here, written against the kernel contract, so the
same code drives both numpy backends; the kernel set decides how conv and pooling compute.
Parameters and buffers live in flat dicts keyed by dotted names (``layer1.0.conv1.w``), the
same names the torch executor uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.kernels.common import dropout_mask
from cnnlab.nn import layers as L


@dataclass
class _Run:
    """What one forward pass needs besides the input."""

    kernels: Any
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    train: bool
    rng: np.random.Generator | None


Grads = dict[str, np.ndarray]
Forward = Callable[[Any, np.ndarray, str, _Run], tuple[np.ndarray, Any]]
Backward = Callable[[Any, np.ndarray, Any, str, Grads, Any], np.ndarray]


# -- leaf forward/backward pairs ---------------------------------------------------------------
# forward(layer, x, name, run) -> (out, cache); backward(layer, dout, cache, name, grads, kernels)
# -> dx, writing parameter gradients into grads under "<name>.<param>".


def _conv_forward(layer: L.Conv2d, x: np.ndarray, name: str, run: _Run) -> tuple:
    w, b = run.params[f"{name}.w"], run.params.get(f"{name}.b")
    return run.kernels.conv2d_forward(x, w, b, layer.stride, layer.pad)


def _conv_backward(
    layer: L.Conv2d,
    dout: np.ndarray,
    cache: Any,
    name: str,
    grads: Grads,
    k: Any,
    need_dx: bool = True,
) -> np.ndarray | None:
    dx, grads[f"{name}.w"], db = k.conv2d_backward(dout, cache, need_dx=need_dx)
    if layer.bias:
        grads[f"{name}.b"] = db
    return dx


def _linear_forward(layer: L.Linear, x: np.ndarray, name: str, run: _Run) -> tuple:
    w, b = run.params[f"{name}.w"], run.params.get(f"{name}.b")
    return run.kernels.linear_forward(x, w, b)


def _linear_backward(
    layer: L.Linear, dout: np.ndarray, cache: Any, name: str, grads: Grads, k: Any
) -> np.ndarray:
    dx, grads[f"{name}.w"], db = k.linear_backward(dout, cache)
    if layer.bias:
        grads[f"{name}.b"] = db
    return dx


def _maxpool_forward(layer: L.MaxPool2d, x: np.ndarray, name: str, run: _Run) -> tuple:
    return run.kernels.maxpool2d_forward(x, layer.kernel, layer.stride, layer.pad, layer.ties)


def _avgpool_forward(layer: L.AvgPool2d, x: np.ndarray, name: str, run: _Run) -> tuple:
    return run.kernels.avgpool2d_forward(x, layer.kernel, layer.stride, layer.pad)


def _dropout_forward(layer: L.Dropout, x: np.ndarray, name: str, run: _Run) -> tuple:
    if not run.train or layer.p == 0:
        return x, None
    if run.rng is None:
        raise ValueError("training with dropout needs the run's numpy generator (rng)")
    return run.kernels.dropout_forward(x, dropout_mask(run.rng, x.shape, layer.p), layer.p)


def _dropout_backward(
    layer: L.Dropout, dout: np.ndarray, cache: Any, name: str, grads: Grads, k: Any
) -> np.ndarray:
    return dout if cache is None else k.dropout_backward(dout, cache)


def _batchnorm_forward(layer: L.BatchNorm, x: np.ndarray, name: str, run: _Run) -> tuple:
    p, b = run.params, run.buffers
    return run.kernels.batchnorm_forward(
        x,
        p[f"{name}.gamma"],
        p[f"{name}.beta"],
        b[f"{name}.running_mean"],
        b[f"{name}.running_var"],
        train=run.train,
        momentum=layer.momentum,
        eps=layer.eps,
    )


def _batchnorm_backward(
    layer: L.BatchNorm, dout: np.ndarray, cache: Any, name: str, grads: Grads, k: Any
) -> np.ndarray:
    dx, dgamma, dbeta = k.batchnorm_backward(dout, cache, layer.backward)
    grads[f"{name}.gamma"], grads[f"{name}.beta"] = dgamma, dbeta
    return dx


def _affine_backward(kernel: str) -> Backward:
    """Backward of a norm with per-channel γ, β: ``<kernel>_backward(dout, cache)``."""

    def backward(
        layer: Any, dout: np.ndarray, cache: Any, name: str, grads: Grads, k: Any
    ) -> np.ndarray:
        dx, grads[f"{name}.gamma"], grads[f"{name}.beta"] = getattr(k, f"{kernel}_backward")(
            dout, cache
        )
        return dx

    return backward


def _layernorm_forward(layer: L.LayerNorm, x: np.ndarray, name: str, run: _Run) -> tuple:
    p = run.params
    return run.kernels.layernorm_forward(x, p[f"{name}.gamma"], p[f"{name}.beta"], layer.eps)


def _groupnorm_forward(layer: L.GroupNorm, x: np.ndarray, name: str, run: _Run) -> tuple:
    p = run.params
    g, b = p[f"{name}.gamma"], p[f"{name}.beta"]
    return run.kernels.groupnorm_forward(x, g, b, layer.groups, layer.eps)


def _lrn_forward(layer: L.LRN, x: np.ndarray, name: str, run: _Run) -> tuple:
    return run.kernels.lrn_forward(x, layer.size, layer.alpha, layer.beta, layer.k)


def _simple(kernel: str) -> tuple[Forward, Backward]:
    """The pair of a layer without parameters or options: ``<kernel>_forward(x)``."""

    def forward(layer: Any, x: np.ndarray, name: str, run: _Run) -> tuple:
        return getattr(run.kernels, f"{kernel}_forward")(x)

    return forward, _input_backward(kernel)


def _input_backward(kernel: str) -> Backward:
    """Backward of a layer whose only gradient is dx: ``<kernel>_backward(dout, cache)``."""

    def backward(
        layer: Any, dout: np.ndarray, cache: Any, name: str, grads: Grads, k: Any
    ) -> np.ndarray:
        return getattr(k, f"{kernel}_backward")(dout, cache)

    return backward


PAIRS: dict[type, tuple[Forward, Backward]] = {
    L.Conv2d: (_conv_forward, _conv_backward),
    L.Linear: (_linear_forward, _linear_backward),
    L.MaxPool2d: (_maxpool_forward, _input_backward("maxpool2d")),
    L.AvgPool2d: (_avgpool_forward, _input_backward("avgpool2d")),
    L.GlobalAvgPool: _simple("global_avgpool"),
    L.ReLU: _simple("relu"),
    L.Flatten: _simple("flatten"),
    L.Dropout: (_dropout_forward, _dropout_backward),
    L.BatchNorm: (_batchnorm_forward, _batchnorm_backward),
    L.LayerNorm: (_layernorm_forward, _affine_backward("layernorm")),
    L.GroupNorm: (_groupnorm_forward, _affine_backward("groupnorm")),
    L.LRN: (_lrn_forward, _input_backward("lrn")),
}


# -- the tree ----------------------------------------------------------------------------------


def _forward(node: L.Node, x: np.ndarray, prefix: str, run: _Run) -> tuple[np.ndarray, Any]:
    if isinstance(node, L.Sequential):
        caches = []
        for name, child in node.children:
            x, cache = _forward(child, x, f"{prefix}{name}.", run)
            caches.append(cache)
        return x, caches
    if isinstance(node, L.Residual):
        out, body = _forward(node.body, x, prefix, run)
        if node.shortcut is None:
            short, shortcut = x, None
        else:
            short, shortcut = _forward(node.shortcut, x, f"{prefix}shortcut.", run)
        y, add = run.kernels.add_forward(out, short)
        return y, (body, shortcut, add)
    forward = PAIRS[type(node)][0]
    return forward(node, x, prefix.rstrip("."), run)


def _backward(
    node: L.Node,
    dout: np.ndarray,
    cache: Any,
    prefix: str,
    grads: Grads,
    kernels: Any,
    need_dx: bool = True,
) -> np.ndarray | None:
    """The parameters' gradients into grads; returns dx (None for a conv when ``need_dx`` is
    False: the net's first conv skips the products for a gradient nothing reads)."""
    if isinstance(node, L.Sequential):
        last = len(node.children) - 1
        for i, ((name, child), c) in enumerate(
            zip(reversed(node.children), reversed(cache), strict=True)
        ):
            first = i == last
            dout = _backward(
                child, dout, c, f"{prefix}{name}.", grads, kernels, need_dx or not first
            )
        return dout
    if isinstance(node, L.Residual):
        body, shortcut, add = cache
        dbody, dshort = kernels.add_backward(dout, add)
        dx = _backward(node.body, dbody, body, prefix, grads, kernels, need_dx)
        if node.shortcut is not None:
            dshort = _backward(
                node.shortcut, dshort, shortcut, f"{prefix}shortcut.", grads, kernels, need_dx
            )
        return dx + dshort if need_dx else None
    if isinstance(node, L.Conv2d):
        return _conv_backward(node, dout, cache, prefix.rstrip("."), grads, kernels, need_dx)
    backward = PAIRS[type(node)][1]
    return backward(node, dout, cache, prefix.rstrip("."), grads, kernels)


class NumpyNet:
    """A layer tree with its parameters, run on a numpy kernel set.

    Args:
        net: the architecture (see :mod:`cnnlab.models`).
        kernels: a numpy kernel set (``cnnlab.kernels.naive`` or ``cnnlab.kernels.im2col``).
        params: name -> array, e.g. from :func:`cnnlab.init.init_params`; used in place.
        buffers: name -> array (batch norm's running statistics); updated in place.
    """

    def __init__(
        self,
        net: L.Node,
        kernels: Any,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
    ) -> None:
        self.net, self.kernels, self.params, self.buffers = net, kernels, params, buffers
        self._cache: Any = None

    def forward(
        self, x: np.ndarray, train: bool = True, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """logits: (N, K) for x: (N, C, H, W); keeps what :meth:`backward` needs."""
        run = _Run(self.kernels, self.params, self.buffers, train, rng)
        logits, self._cache = _forward(self.net, x, "", run)
        return logits

    def backward(self, dlogits: np.ndarray) -> Grads:
        """Gradients of every parameter, by name, from dL/dlogits of the last forward."""
        if self._cache is None:
            raise RuntimeError("backward needs a forward first")
        grads: Grads = {}
        # Nothing reads the input's gradient: the first conv skips it.
        _backward(self.net, dlogits, self._cache, "", grads, self.kernels, need_dx=False)
        return {name: grads[name] for name in self.params}

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        train: bool = True,
        rng: np.random.Generator | None = None,
        grads: bool = True,
    ) -> tuple[float, Grads, np.ndarray]:
        """Softmax cross-entropy of a batch: ``(loss, grads by name, logits)``.

        x: (N, C, H, W); y: (N,) labels. ``grads=False`` skips the backward (grads is empty).
        """
        logits = self.forward(x, train, rng)
        loss, dlogits = self.kernels.softmax_cross_entropy(logits, y)
        return float(loss), self.backward(dlogits) if grads else {}, logits

    def get(self, name: str) -> np.ndarray:
        """A copy of parameter ``name``."""
        return self.params[name].copy()

    def set(self, name: str, value: np.ndarray) -> None:
        """Overwrite parameter ``name`` with value (same shape)."""
        self.params[name][...] = value
