"""Whole-model gradient checks (``cnnlab gradcheck model=<name>``).

The model is built with its widths scaled down (``gradcheck.width_scale``) on a small float64
batch, its weights drawn once from the seed (biases and norm affines then moved off their init
values, see :func:`_off_init`) and copied into every backend. For each backend:

- against torch autograd, the logits and every parameter's full gradient;
- against centred differences of the backend's own loss, ``gradcheck.samples`` coordinates of
  each parameter: the one with the largest analytic gradient (so the tensor's norm is not
  rounding noise) and the rest drawn at random. The differences are taken at h and 2h and
  judged by the error-aware gate of the layer checks (:meth:`Thresholds.numeric_rtol`), the
  error taken as no less than the loss's rounding allows (one ulp of the loss over 2h per
  coordinate: D(h) and D(2h) may round alike); a gradient within ten times that is zero to
  the check (MobileNetV2's projection norms' beta, whose shift the next norm removes).

The records have the layer checks' format with ``target="model"`` and the parameter's name as
``tensor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.backends import BACKENDS, DEFAULT_OPTIONS, Backend, BackendOptions
from cnnlab.compare import compare
from cnnlab.gradcheck.numeric import estimated
from cnnlab.gradcheck.run import Record, Thresholds, compared_numeric, compared_torch
from cnnlab.ops.tree import Node

if TYPE_CHECKING:
    from cnnlab.nn.numpy_net import NumpyNet
    from cnnlab.nn.torch_net import TorchModel
    from cnnlab.schema import GradcheckConfig


@dataclass(frozen=True)
class ModelProblem:
    """Everything that defines one model check, shared by all backends."""

    model: str
    variant: str
    net: Node
    initial: dict[str, np.ndarray]  # the weights as the init scheme draws them
    params: dict[str, np.ndarray]  # the weights checked: initial, biases and norm affines moved
    buffers: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    dropout_seed: int


def make_problem(cfg: GradcheckConfig) -> ModelProblem:
    """Build the scaled-down model, its float64 weights and a random batch from the config."""
    from cnnlab.models import instantiate
    from cnnlab.ops.tree import param_specs

    g = cfg.gradcheck
    channels, height, width = (int(n) for n in cfg.data.shape)
    if g.image_size:  # never below the smallest input the architecture accepts
        side = max(g.image_size, cfg.model.min_size)
        size = (side, side)
    else:
        size = (height, width)
    in_shape = (channels, *size)
    rng = np.random.default_rng([cfg.trainer.seed, 1])
    model = instantiate(
        cfg.model, cfg.norm, cfg.init, in_shape, rng, np.float64, g.width_scale, cfg.act
    )
    net, initial, buffers = model.net, model.params, model.buffers
    params = _off_init(initial, param_specs(net, in_shape), rng)
    x = rng.standard_normal((g.batch_size, *in_shape))
    y = rng.integers(0, cfg.model.num_classes, size=g.batch_size)
    variant = (
        f"widths x{g.width_scale:g}, input {g.batch_size}x{'x'.join(map(str, in_shape))}, "
        f"norm={cfg.norm.name}, init={cfg.init.name}"
    )
    return ModelProblem(
        cfg.model.name, variant, net, initial, params, buffers, x, y, int(rng.integers(2**31))
    )


def _off_init(
    initial: dict[str, np.ndarray], specs: list, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The initial weights with biases and β drawn around 0 and γ around 1.

    At init every bias is 0, so a conv window that lies wholly in the zero padding outputs
    exactly 0: on ReLU's kink, where a centred difference measures half the slope. Moving the
    biases off 0 (and γ, β off 1, 0) keeps every unit off its kink and tests those gradients.
    """
    params = dict(initial)
    for spec in specs:
        if spec.role in ("bias", "beta"):
            params[spec.name] = rng.normal(0.0, 0.5, size=spec.shape)
        elif spec.role == "gamma":
            params[spec.name] = rng.uniform(0.5, 1.5, size=spec.shape)
    return params


def _where(p: ModelProblem) -> dict[str, object]:
    return {"target": "model", "layer": None, "model": p.model, "variant": p.variant}


def _loss(
    model: NumpyNet | TorchModel, p: ModelProblem, grads: bool = True
) -> tuple[float, dict, np.ndarray]:
    # A fresh generator per call: every evaluation draws the same dropout masks.
    return model.loss(p.x, p.y, True, np.random.default_rng(p.dropout_seed), grads)


def sampled_coordinates(grad: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check numerically: the largest |gradient| first, then random others."""
    flat = np.abs(grad).reshape(-1)
    first = int(np.argmax(flat))
    others = np.delete(np.arange(flat.size), first)
    picked = rng.choice(others, size=min(samples - 1, others.size), replace=False)
    return np.concatenate([[first], picked]).astype(int)


def numeric_at(
    model: NumpyNet | TorchModel, p: ModelProblem, name: str, index: np.ndarray, h: float
) -> np.ndarray:
    """Centred differences of the loss w.r.t. the given flat coordinates of parameter name."""
    value = model.get(name)
    flat = value.reshape(-1)
    out = np.empty(len(index))
    for k, i in enumerate(index):
        saved = flat[i]
        flat[i] = saved + h
        model.set(name, value)
        plus = _loss(model, p, grads=False)[0]
        flat[i] = saved - h
        model.set(name, value)
        minus = _loss(model, p, grads=False)[0]
        flat[i] = saved
        out[k] = (plus - minus) / (2 * h)
    model.set(name, value)
    return out


def check_model(
    p: ModelProblem,
    backends: list[Backend],
    t: Thresholds,
    samples: int,
    seed: int,
    report_loss: Callable[[str, float], None] = lambda backend, loss: None,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> Iterator[list[Record]]:
    """Check the model on each backend, yielding records as they come: first its logits and
    gradients against torch autograd, then one parameter at a time against numeric
    differences (the slow part, so a caller can show progress).

    report_loss(backend, loss) receives each backend's loss at the initial weights.
    """
    reference = BACKENDS["torch"].model(p.net, p.params, p.buffers, options)
    _, ref_grads, ref_logits = _loss(reference, p)
    for backend in backends:
        initial = backend.model(p.net, p.initial, p.buffers, options)
        report_loss(backend.name, _loss(initial, p, False)[0])
        model = backend.model(p.net, p.params, p.buffers, options)
        loss, grads, logits = _loss(model, p)
        # The finest step of a centred difference: one ulp of the loss over 2h per coordinate.
        ulp = float(np.spacing(abs(loss))) / (2 * t.step)
        where = _where(p)
        if backend.name != "torch":
            vs_torch = [
                compared_torch(where, backend.name, "logits", compare(logits, ref_logits), t)
            ]
            vs_torch += [
                compared_torch(where, backend.name, name, compare(grad, ref_grads[name]), t)
                for name, grad in grads.items()
            ]
            yield vs_torch
        rng = np.random.default_rng([seed, 2])
        for name, grad in grads.items():
            index = sampled_coordinates(grad, samples, rng)
            ref = estimated(
                grad.reshape(-1)[index],
                partial(numeric_at, model, p, name, index),
                t.step,
                f"{len(index)} sampled",
            )
            ref = replace(ref, resolution=ulp * float(np.sqrt(len(index))))
            yield [compared_numeric(where, backend.name, name, ref, t)]
