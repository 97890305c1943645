"""Run a layer tree on a numpy kernel set (``naive`` or ``im2col``): forward, then backward.

Nothing here knows a layer kind: each leaf runs through its registration's binding
(:mod:`cnnlab.ops.registry`), a chain runs its children in order, and branches run on the same
input and are combined by their container's kernel. So the same code drives both numpy
backends, and the kernel set decides how each layer computes. Where the set computes a run of
layers faster in one kernel (a fused kind it names, such as ``conv_relu``), the executor runs
the tree with those runs replaced (:func:`cnnlab.ops.registry.fused`); names and parameters
stay the same. Parameters and buffers live in
flat dicts keyed by dotted names (``layer1.0.conv1.w``), the same names the torch executor uses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from cnnlab.kernels.common import dropout_mask
from cnnlab.kernels.protocol import Cache, KernelSet
from cnnlab.ops import kind_of
from cnnlab.ops.registry import fused
from cnnlab.ops.tree import Branches, Chain, Layer, Node

Grads = dict[str, np.ndarray]
R = TypeVar("R")


class LayerTimer(Protocol):
    """A clock the executor runs each leaf's kernels through, when one is set
    (:attr:`NumpyNet.timer`: ``cnnlab bench model``'s per-layer profile). Dropout's mask and
    the containers' kernels (residual sums) run outside it: they belong to no leaf."""

    def forward(self, name: str, call: Callable[[], R]) -> R:
        """``call()``, the forward kernel of leaf ``name`` (``layer1.0.conv1``), timed."""
        ...

    def backward(self, name: str, call: Callable[[], R]) -> R:
        """``call()``, the backward kernel of leaf ``name``, timed."""
        ...


class _PassedThrough:
    """The cache of a layer that was the identity (dropout outside training)."""


_THROUGH = _PassedThrough()


@dataclass
class _Run:
    """What one forward pass needs besides the input; ``taps``: the outputs of the layers
    named in ``wanted`` (children of a chain, by dotted name), filled in on the way."""

    kernels: KernelSet
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    train: bool
    rng: np.random.Generator | None
    timer: LayerTimer | None = None
    wanted: frozenset[str] = frozenset()
    taps: dict[str, np.ndarray] = field(default_factory=dict)


def _forward(node: Node, x: np.ndarray, prefix: str, run: _Run) -> tuple[np.ndarray, Cache]:
    if isinstance(node, Chain):
        caches = []
        for name, child in node.children:
            x, cache = _forward(child, x, f"{prefix}{name}.", run)
            caches.append(cache)
            if f"{prefix}{name}" in run.wanted:
                run.taps[f"{prefix}{name}"] = x
        return x, caches
    kind = kind_of(node)
    if isinstance(node, Branches):
        outs, caches = [], []
        for name, branch in node.branches():
            out, cache = (x, None) if branch is None else _forward(branch, x, prefix + name, run)
            outs.append(out)
            caches.append(cache)
        y, combined = getattr(run.kernels, kind.forward)(*outs)
        return y, (caches, combined)
    assert isinstance(node, Layer)
    if node.passes_through(run.train):
        return x, _THROUGH
    name = prefix.rstrip(".")
    args = kind.bind(
        node,
        lambda p: run.params.get(f"{name}.{p}"),
        lambda b: run.buffers[f"{name}.{b}"],
        run.train,
    )
    if kind.mask:
        if run.rng is None:
            raise ValueError("training with dropout needs the run's numpy generator (rng)")
        args["mask"] = dropout_mask(run.rng, x.shape, args["p"])  # type: ignore[arg-type]
    forward = getattr(run.kernels, kind.forward)
    if run.timer is not None:
        return run.timer.forward(name, lambda: forward(x, **args))
    return forward(x, **args)


def _backward(
    node: Node,
    dout: np.ndarray,
    cache: Cache,
    prefix: str,
    grads: Grads,
    kernels: KernelSet,
    need_dx: bool = True,
    timer: LayerTimer | None = None,
) -> np.ndarray | None:
    """The parameters' gradients into grads; returns dx (None where ``need_dx`` is False and
    the layer can skip it: the net's first conv skips the products for a gradient nothing
    reads)."""
    if isinstance(node, Chain):
        last = len(node.children) - 1
        for i, ((name, child), c) in enumerate(
            zip(reversed(node.children), reversed(cache), strict=True)  # type: ignore[call-overload]
        ):
            first = i == last
            dout = _backward(  # type: ignore[assignment]
                child, dout, c, f"{prefix}{name}.", grads, kernels, need_dx or not first, timer
            )
        return dout
    kind = kind_of(node)
    if isinstance(node, Branches):
        caches, combined = cache  # type: ignore[misc]
        douts = getattr(kernels, kind.backward)(dout, combined)
        dx = None
        for (name, branch), d, c in zip(node.branches(), douts, caches, strict=True):
            if branch is not None:
                d = _backward(branch, d, c, prefix + name, grads, kernels, need_dx, timer)
            if need_dx:
                dx = d if dx is None else dx + d
        return dx
    if cache is _THROUGH:
        return dout
    name = prefix.rstrip(".")
    args = kind.backward_args(node)
    if kind.skips_dx:
        args["need_dx"] = need_dx
    backward = getattr(kernels, kind.backward)
    if timer is not None:
        result = timer.backward(name, lambda: backward(dout, cache, **args))
    else:
        result = backward(dout, cache, **args)
    dx = None
    for arg, grad in kind.named_grads(result):
        if arg == "x":
            dx = grad
        elif grad is not None:
            grads[f"{name}.{arg}"] = grad
    return dx  # type: ignore[return-value]


class NumpyNet:
    """A layer tree with its parameters, run on a numpy kernel set.

    Args:
        net: the architecture (see :mod:`cnnlab.models`).
        kernels: a numpy kernel set (``Naive()`` or ``Im2col(...)``).
        params: name -> array, e.g. from :func:`cnnlab.init.init_params`; used in place.
        buffers: name -> array (batch norm's running statistics); updated in place.

    Attributes:
        timer: a :class:`LayerTimer` every leaf's kernels run through; None (the default)
            runs them directly.
        absorbed: each layer that runs inside a fused one, by name, and the fused layer's
            name (``{"relu1": "conv1"}``): the timer sees only the latter.
    """

    def __init__(
        self,
        net: Node,
        kernels: KernelSet,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
    ) -> None:
        self.net, self.kernels, self.params, self.buffers = net, kernels, params, buffers
        self._run, self.absorbed = fused(net, getattr(kernels, "fused", frozenset()))
        self._cache: Cache | None = None
        self.timer: LayerTimer | None = None

    def forward(
        self, x: np.ndarray, train: bool = True, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """logits: (N, K) for x: (N, C, H, W); keeps what :meth:`backward` needs."""
        run = _Run(self.kernels, self.params, self.buffers, train, rng, self.timer)
        logits, self._cache = _forward(self._run, x, "", run)
        return logits

    def backward(self, dlogits: np.ndarray) -> Grads:
        """Gradients of every parameter, by name, from dL/dlogits of the last forward."""
        # Nothing reads the input's gradient: the first conv skips it.
        grads, _ = self._backprop(dlogits, need_dx=False)
        return grads

    def input_grad(self, dlogits: np.ndarray) -> np.ndarray:
        """dx: (N, C, H, W), the gradient of the last forward's input from dL/dlogits (the
        parameters' gradients are computed on the way and dropped): saliency maps."""
        _, dx = self._backprop(dlogits, need_dx=True)
        assert dx is not None
        return dx

    def _backprop(self, dlogits: np.ndarray, need_dx: bool) -> tuple[Grads, np.ndarray | None]:
        if self._cache is None:
            raise RuntimeError("backward needs a forward first")
        grads: Grads = {}
        dx = _backward(
            self._run,
            dlogits,
            self._cache,
            "",
            grads,
            self.kernels,
            need_dx=need_dx,
            timer=self.timer,
        )
        return {name: grads[name] for name in self.params}, dx

    def activations(self, x: np.ndarray, names: Collection[str]) -> dict[str, np.ndarray]:
        """The outputs of the layers ``names`` (dotted names of any chain's children:
        ``relu1``, ``layer2``, ``layer2.0``) for x: (N, C, H, W), in evaluation mode.

        Runs the tree as built, without fused layers, so that every named layer's own output
        exists (``conv1`` before the ReLU a fused ``conv_relu`` would apply); the kernels are
        this set's. A name the tree does not have is a KeyError.
        """
        run = _Run(self.kernels, self.params, self.buffers, False, None, wanted=frozenset(names))
        _forward(self.net, x, "", run)
        missing = sorted(set(names) - set(run.taps))
        if missing:
            raise KeyError(f"no layer named {', '.join(missing)} in the net")
        return run.taps

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        train: bool = True,
        rng: np.random.Generator | None = None,
        grads: bool = True,
        smoothing: float = 0.0,
    ) -> tuple[float, Grads, np.ndarray]:
        """Softmax cross-entropy of a batch: ``(loss, grads by name, logits)``.

        x: (N, C, H, W); y: (N,) labels. ``grads=False`` skips the backward (grads is empty);
        smoothing: the loss's label smoothing ε.
        """
        logits = self.forward(x, train, rng)
        loss, dlogits = self.kernels.softmax_cross_entropy(logits, y, smoothing=smoothing)
        return float(loss), self.backward(dlogits) if grads else {}, logits

    def get(self, name: str) -> np.ndarray:
        """A copy of parameter ``name``."""
        return self.params[name].copy()

    def set(self, name: str, value: np.ndarray) -> None:
        """Overwrite parameter ``name`` with value (same shape)."""
        self.params[name][...] = value
