"""Optimizers and learning-rate schedules: the numpy twins of ``torch.optim``'s SGD, Adagrad,
RMSprop, Adam and AdamW.

The numpy backends train with :class:`NumpyOptimizer`; the torch backend with the
``torch.optim`` optimizer that :func:`torch_optimizer` builds from the same config. Both do the
same maths in the same order, so a numpy run and a torch run that start from the same weights
and see the same gradients stay together up to float rounding (the tests hold them within
1e-12 relative over 20 steps in float64). With ``g`` the gradient, ``p`` a parameter, ``lr``
the step's learning rate and ``wd`` the weight decay (L2, added to the gradient, applied to
every parameter as torch does with a single parameter group):

- ``sgd``:      ``g' = g + wd·p``;  ``p ← p − lr·g'``
- ``momentum``: ``g' = g + wd·p``;  ``buf ← μ·buf + g'`` (``buf = g'`` at the first step);
  ``p ← p − lr·(g' + μ·buf)`` with ``nesterov``, else ``p ← p − lr·buf`` (torch's SGD with
  momentum μ and dampening 0)
- ``adam``:     ``g' = g + wd·p``;  ``m ← m + (1 − β1)·(g' − m)``;
  ``v ← β2·v + (1 − β2)·g'·g'``;  ``p ← p − (lr / (1 − β1^t))·m / (sqrt(v) / sqrt(1 − β2^t) + eps)``
  (torch's Adam with L2 decay, not AdamW; step ``t`` counts from 1)
- ``adamw``:    ``p ← p·(1 − lr·wd)`` (decay decoupled from the gradient), then ``adam``'s update
  with ``g' = g``
- ``adagrad``:  ``g' = g + wd·p``;  ``s ← s + g'·g'``;  ``p ← p − lr·g' / (sqrt(s) + eps)``
- ``rmsprop``:  ``g' = g + wd·p``;  ``v ← α·v + (1 − α)·g'·g'``;  with momentum μ > 0
  ``buf ← μ·buf + g' / (sqrt(v) + eps)`` and ``p ← p − lr·buf``, else
  ``p ← p − lr·g' / (sqrt(v) + eps)`` (torch's RMSprop, not centred)

With ``optim.clip_norm`` set, the gradients are first scaled by ``min(1, clip_norm / (‖g‖ +
1e-6))``, ``‖g‖`` the 2-norm of all of them together (:func:`clip_grad_norm`, torch's
``clip_grad_norm_``), before weight decay is added.

The learning rate of each step comes from :func:`learning_rate`, which the trainer calls every
step and hands to both engines:

- ``none``:   ``lr``
- ``step``:   ``lr·gamma^floor(epoch / step_size)`` with ``epoch = step // steps_per_epoch``
- ``cosine``: ``min_lr + (lr − min_lr)·(1 + cos(π·t/T))/2`` with ``t = step`` (capped at ``T``)
  and ``T`` the run's total steps: ``lr`` at the first step, ``min_lr`` at the last
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import RunError
from cnnlab.schema import OptimName

if TYPE_CHECKING:
    import torch

    from cnnlab.schema import OptimConfig

# The state each optimizer keeps per parameter, named as torch names it (RMSprop's momentum
# buffer only with momentum, see slots()).
SLOTS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg",),
}


def slots(optim: OptimConfig) -> tuple[str, ...]:
    """The state ``optim`` keeps per parameter."""
    name = _check(optim)
    if name == "rmsprop" and float(optim.momentum) > 0:
        return (*SLOTS[name], "momentum_buffer")
    return SLOTS[name]


def _check(optim: OptimConfig) -> OptimName:
    """The optimizer's name (the schema holds each key's range, as torch checks them, and the
    rule that nesterov needs momentum)."""
    return OptimName(optim.name)


# -- schedules -----------------------------------------------------------------------------------


def learning_rate(optim: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate of global step ``step`` (counted from 0) under ``optim.schedule``.

    Args:
        optim: the composed ``optim`` config node (``lr``, ``schedule``, ``step_size``,
            ``gamma``, ``min_lr``, ``warmup_steps``).
        step: the global step, 0 for the run's first update.
        steps_per_epoch: updates per epoch (``step`` schedule: ``epoch = step // steps_per_epoch``).
        total_steps: updates in the whole run (``cosine``: ``T``; steps past it stay at
            ``min_lr``).

    ``none``: ``lr``; ``step``: ``lr·gamma^floor(epoch / step_size)``; ``cosine``:
    ``min_lr + (lr − min_lr)·(1 + cos(π·min(step, T)/T))/2``. Any of them is then scaled by
    ``min(1, (step + 1) / warmup_steps)`` during the first ``warmup_steps`` steps: a linear
    warmup keeps the first, largest gradients from killing ReLU units of wide layers.
    """
    warmup = int(optim.warmup_steps)
    scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return scale * _scheduled(optim, step, steps_per_epoch, total_steps)


def _scheduled(optim: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    schedule = optim.schedule
    lr = float(optim.lr)
    if schedule == "none":
        return lr
    if schedule == "step":
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        epoch = step // steps_per_epoch
        return lr * float(optim.gamma) ** (epoch // int(optim.step_size))
    if schedule == "cosine":
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        min_lr = float(optim.min_lr)
        t = min(step, total_steps)
        return min_lr + (lr - min_lr) * (1.0 + math.cos(math.pi * t / total_steps)) / 2.0
    # The schema (cnnlab.schema.Schedule) admits no other value.
    raise ValueError(f"optim: unknown schedule {schedule!r}")


# -- numpy -----------------------------------------------------------------------------------------


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so that their total 2-norm is at most ``max_norm``; return the
    norm before. As ``torch.nn.utils.clip_grad_norm_``: the norm of the parameters' norms, and
    the factor ``max_norm / (norm + 1e-6)`` applied only where it is below 1."""
    norms = [np.linalg.norm(g.reshape(-1)) for g in grads.values()]
    total = float(np.linalg.norm(np.array(norms, dtype=np.float64)))
    factor = max_norm / (total + 1e-6)
    if factor < 1:
        for g in grads.values():
            g *= g.dtype.type(factor)
    return total


class NumpyOptimizer:
    """``optim`` over numpy parameters, updated in place; torch's maths in the parameter's dtype.

    Args:
        optim: the composed ``optim`` config node (``name``, ``weight_decay`` and the
            optimizer's own keys; the learning rate comes with each :meth:`step`).
        params: the parameters by name. The arrays are updated in place, so the model that
            owns them sees every step. Scalars are cast to each parameter's dtype before use,
            so float32 parameters are updated in float32, as torch does.

    State: ``momentum`` keeps ``momentum_buffer`` per parameter, ``adam`` and ``adamw``
    ``exp_avg`` and ``exp_avg_sq``, ``adagrad`` ``sum``, ``rmsprop`` ``square_avg`` (and
    ``momentum_buffer`` with momentum) (torch's slot names), all in the parameter's dtype;
    every optimizer counts its steps. :meth:`state_dict` gives them as
    ``"<param name>/<slot>"`` plus ``"step"``.
    """

    def __init__(self, optim: OptimConfig, params: dict[str, np.ndarray]) -> None:
        self.name = _check(optim)
        self.params = params
        self.weight_decay = float(optim.weight_decay)
        if self.name == "momentum":
            self.momentum = float(optim.momentum)
            self.nesterov = bool(optim.nesterov)
        if self.name in ("adam", "adamw"):
            self.beta1, self.beta2 = (float(b) for b in optim.betas)
        if self.name in ("adam", "adamw", "adagrad", "rmsprop"):
            self.eps = float(optim.eps)
        if self.name == "rmsprop":
            self.alpha, self.momentum = float(optim.alpha), float(optim.momentum)
        # AdamW decays the weights apart from the gradient (in its update); the rest add wd·p.
        self.l2 = self.weight_decay if self.name != "adamw" else 0.0
        self.state = {
            f"{name}/{slot}": np.zeros_like(p)
            for name, p in params.items()
            for slot in slots(optim)
        }
        self.steps = 0  # updates made so far; Adam's t of the current update is steps + 1

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """One update of every parameter from its gradient in ``grads`` at learning rate ``lr``."""
        if grads.keys() != self.params.keys():
            missing = sorted(self.params.keys() - grads.keys())
            extra = sorted(grads.keys() - self.params.keys())
            raise KeyError(f"gradients do not match parameters: missing {missing}, extra {extra}")
        update = getattr(self, f"_{self.name}")
        for name, p in self.params.items():
            g = grads[name]
            if self.l2 != 0:
                g = g + p.dtype.type(self.l2) * p  # torch: grad.add(p, alpha=wd)
            update(name, p, g, lr)
        self.steps += 1

    def _sgd(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        p += p.dtype.type(-lr) * g

    def _momentum(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        mu = p.dtype.type(self.momentum)
        buf = self.state[f"{name}/momentum_buffer"]
        if self.steps == 0:
            buf[...] = g  # torch starts the buffer at the first gradient
        else:
            buf *= mu
            buf += g
        step = g + mu * buf if self.nesterov else buf
        p += p.dtype.type(-lr) * step

    def _adam(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        dtype = p.dtype.type
        m = self.state[f"{name}/exp_avg"]
        v = self.state[f"{name}/exp_avg_sq"]
        # m.lerp_(g, 1 - beta1), written as torch's lerp writes it for each size of weight.
        w = dtype(1 - self.beta1)
        if abs(w) < 0.5:
            m += w * (g - m)
        else:
            m[...] = g - (g - m) * (dtype(1) - w)
        # v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        v *= dtype(self.beta2)
        v += dtype(1 - self.beta2) * g * g
        # Bias corrections and step size in Python floats, as torch's single-tensor Adam.
        t = self.steps + 1
        bias_correction1 = 1 - self.beta1**t
        bias_correction2 = 1 - self.beta2**t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = np.sqrt(v) / dtype(bias_correction2_sqrt) + dtype(self.eps)
        p += dtype(-step_size) * m / denom  # p.addcdiv_(m, denom, value=-step_size)

    def _adamw(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        p *= p.dtype.type(1 - lr * self.weight_decay)  # p.mul_(1 - lr * wd), before the step
        self._adam(name, p, g, lr)

    def _adagrad(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        dtype = p.dtype.type
        total = self.state[f"{name}/sum"]
        total += g * g  # state_sum.addcmul_(g, g, value=1)
        std = np.sqrt(total) + dtype(self.eps)
        p += dtype(-lr) * g / std  # p.addcdiv_(g, std, value=-lr)

    def _rmsprop(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        dtype = p.dtype.type
        v = self.state[f"{name}/square_avg"]
        # square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        v *= dtype(self.alpha)
        v += dtype(1 - self.alpha) * g * g
        avg = np.sqrt(v) + dtype(self.eps)
        if self.momentum > 0:
            buf = self.state[f"{name}/momentum_buffer"]
            buf *= dtype(self.momentum)
            buf += g / avg  # buf.mul_(momentum).addcdiv_(g, avg)
            p += dtype(-lr) * buf
        else:
            p += dtype(-lr) * g / avg  # p.addcdiv_(g, avg, value=-lr)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: ``"<param name>/<slot>"`` arrays and ``"step"`` (0-d int64)."""
        state = {key: value.copy() for key, value in self.state.items()}
        state["step"] = np.array(self.steps, dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned, bit for bit.

        The keys, shapes and dtypes must be those of this optimizer's own state (same
        optimizer, same parameters); anything else is a :class:`RunError` (a checkpoint
        resumed with another optimizer or model).
        """
        expected = set(self.state) | {"step"}
        if set(state) != expected:
            missing = sorted(expected - set(state))
            extra = sorted(set(state) - expected)
            raise RunError(
                f"optimizer state does not fit optim={self.name}: "
                f"missing {missing}, unexpected {extra}"
            )
        for key, value in self.state.items():
            saved = np.asarray(state[key])
            if saved.shape != value.shape or saved.dtype != value.dtype:
                raise RunError(
                    f"optimizer state {key!r} is {saved.dtype}{list(saved.shape)}, "
                    f"expected {value.dtype}{list(value.shape)}"
                )
        for key, value in self.state.items():
            value[...] = state[key]
        self.steps = int(state["step"])


# -- torch -----------------------------------------------------------------------------------------


def torch_optimizer(optim: OptimConfig, params: list, fused: bool = False) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of ``optim`` over ``params`` (one parameter group).

    ``sgd`` and ``momentum`` give ``torch.optim.SGD`` (momentum 0, or μ with dampening 0 and
    ``nesterov``), ``adam`` gives ``torch.optim.Adam`` (L2 ``weight_decay``), ``adamw``
    ``torch.optim.AdamW``, ``adagrad`` ``torch.optim.Adagrad`` and ``rmsprop``
    ``torch.optim.RMSprop`` (not centred). Adagrad's and RMSprop's fused kernels are not CUDA
    ones: they run unfused. The
    learning rate starts at ``optim.lr``; the trainer sets each step's with :func:`set_torch_lr`.
    fused: torch's fused CUDA kernels (the same update in one kernel per step; with loss
    scaling they skip an overflowed step on the device, where the unfused path asks the host).
    """
    import torch

    name = _check(optim)
    lr = float(optim.lr)
    weight_decay = float(optim.weight_decay)
    kernel = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay, **kernel)
    if name == "momentum":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=float(optim.momentum),
            dampening=0.0,
            nesterov=bool(optim.nesterov),
            weight_decay=weight_decay,
            **kernel,
        )
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=float(optim.eps), weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            alpha=float(optim.alpha),
            eps=float(optim.eps),
            momentum=float(optim.momentum),
            weight_decay=weight_decay,
        )
    beta1, beta2 = (float(b) for b in optim.betas)
    adam = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return adam(
        params,
        lr=lr,
        betas=(beta1, beta2),
        eps=float(optim.eps),
        weight_decay=weight_decay,
        **kernel,
    )


def set_torch_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``opt`` for the next step."""
    for group in opt.param_groups:
        group["lr"] = float(lr)
