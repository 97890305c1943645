"""float32 convs as accurate as torch's: at every ResNet-18 conv shape (CIFAR input, batch 8),
im2col's float32 out, dx and dw are within twice torch float32's relative error.

Both are measured the same way: inputs drawn in float64 (standard normal, Kaiming-scaled
filters), cast to float32 for the float32 runs, and compared with torch's float64 result on the
float64 draws: ``||a - ref|| / ||ref||`` (2-norm). Rounding the inputs to float32 alone costs
about 2e-7 there, so twice torch's leaves about as much again for the kernel's own rounding.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from torch.nn.functional import conv2d as torch_conv2d

from cnnlab.kernels.im2col import Im2col

BATCH = 8
# Every distinct conv of ResNet-18 on CIFAR: (C, H, W) in, then F, kernel, stride, pad.
CONVS = {
    "stem-3x3": ((3, 32, 32), 64, 3, 1, 1),
    "layer1-3x3": ((64, 32, 32), 64, 3, 1, 1),
    "layer2-3x3s2": ((64, 32, 32), 128, 3, 2, 1),
    "layer2-shortcut": ((64, 32, 32), 128, 1, 2, 0),
    "layer2-3x3": ((128, 16, 16), 128, 3, 1, 1),
    "layer3-3x3s2": ((128, 16, 16), 256, 3, 2, 1),
    "layer3-shortcut": ((128, 16, 16), 256, 1, 2, 0),
    "layer3-3x3": ((256, 8, 8), 256, 3, 1, 1),
    "layer4-3x3s2": ((256, 8, 8), 512, 3, 2, 1),
    "layer4-shortcut": ((256, 8, 8), 512, 1, 2, 0),
    "layer4-3x3": ((512, 4, 4), 512, 3, 1, 1),
}
TENSORS = ("out", "dx", "dw")
RATIO = 2.0  # the most cnnlab's error may be, in units of torch float32's


def _draw(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, w and dout for CONVS[name], in float64, the same on every run."""
    (C, H, W), F, k, stride, pad = CONVS[name]
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    rng = np.random.default_rng(list(CONVS).index(name))
    x = rng.standard_normal((BATCH, C, H, W))
    w = rng.standard_normal((F, C, k, k)) * np.sqrt(2 / (C * k * k))
    return x, w, rng.standard_normal((BATCH, F, Ho, Wo))


def _torch(name: str, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    """torch's out, dx and dw in ``dtype`` (inputs rounded to it), as float64 arrays."""
    stride, pad = CONVS[name][3:]
    x, w, dout = (torch.tensor(a, dtype=dtype) for a in _draw(name))
    x.requires_grad_(True)
    w.requires_grad_(True)
    out = torch_conv2d(x, w, stride=stride, padding=pad)
    out.backward(dout)
    return tuple(t.detach().double().numpy() for t in (out, x.grad, w.grad))


def _im2col_float32(name: str) -> tuple[np.ndarray, ...]:
    """im2col's float32 out, dx and dw (two threads: the same chunks on every machine)."""
    stride, pad = CONVS[name][3:]
    x, w, dout = (a.astype(np.float32) for a in _draw(name))
    kernels = Im2col(threads=2)
    out, cache_ = kernels.conv2d_forward(x, w, None, stride, pad)
    dx, dw, _ = kernels.conv2d_backward(dout, cache_)
    assert all(a.dtype == np.float32 for a in (out, dx, dw))
    return out, dx, dw


@cache
def _errors(name: str) -> dict[str, tuple[float, float]]:
    """Per tensor: (im2col float32's relative error, torch float32's), against float64."""
    want = _torch(name, torch.float64)

    def error(got: np.ndarray, ref: np.ndarray) -> float:
        return float(np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref))

    ours = [error(a, r) for a, r in zip(_im2col_float32(name), want, strict=True)]
    torchs = [error(a, r) for a, r in zip(_torch(name, torch.float32), want, strict=True)]
    return dict(zip(TENSORS, zip(ours, torchs, strict=True), strict=True))


def _cases() -> list:
    return [
        pytest.param(name, tensor, id=name + "-" + tensor) for name in CONVS for tensor in TENSORS
    ]


@pytest.mark.parametrize(("name", "tensor"), _cases())
def test_float32_error_is_within_twice_torchs(name, tensor):
    ours, torchs = _errors(name)[tensor]
    assert ours <= RATIO * torchs, (
        f"{name} {tensor}: im2col float32 {ours:.2e} vs torch float32 {torchs:.2e} "
        f"({ours / torchs:.2f}x > {RATIO}x)"
    )


def test_the_shapes_are_resnet18s_convs():
    """CONVS is every distinct conv of the resnet18 model on CIFAR-sized input."""
    from cnnlab.config import compose
    from cnnlab.models import build_net
    from cnnlab.ops.conv import Conv2d
    from cnnlab.ops.tree import leaves

    cfg = compose("summary", ["model=resnet18", "data=cifar10"])
    in_shape = tuple(cfg.data.shape)
    convs = {
        (
            leaf.in_shape,
            leaf.layer.out_channels,
            leaf.layer.kernel,
            leaf.layer.stride,
            leaf.layer.pad,
        )
        for leaf in leaves(build_net(cfg.model, cfg.norm, in_shape), in_shape)
        if isinstance(leaf.layer, Conv2d)
    }
    assert convs == set(CONVS.values())
