"""Window geometry shared by every backend: output sizes, padding and the shape checks.

All backends call these before computing anything, so a shape that does not fit gives the same
clear :class:`~cnnlab.errors.ShapeError` everywhere (torch's own messages differ per op).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cnnlab.errors import ShapeError

if TYPE_CHECKING:  # numpy loads with the kernels, not with the layer descriptions that
    import numpy as np  # use these shape rules (``cnnlab --help`` lists layer kinds)

IntPair = int | tuple[int, int]


def _is_int(v: object) -> bool:
    """A Python or numpy integer (``np.int64(2)`` from an array's shape), not a bool."""
    return isinstance(v, int | _np_integer()) and not isinstance(v, bool)


def _np_integer() -> type:
    import numpy as np  # only when called: layer descriptions import this module numpy-free

    return np.integer


def pair(v: IntPair, name: str = "value") -> tuple[int, int]:
    """Return ``(v, v)`` for an int, or the two ints of a pair; anything else (1.5, a bool, a
    triple) is a ShapeError naming the argument."""
    if _is_int(v):
        return (int(v), int(v))  # type: ignore[call-overload]
    if isinstance(v, tuple | list) and len(v) == 2 and all(_is_int(a) for a in v):
        return (int(v[0]), int(v[1]))
    raise ShapeError(f"{name} must be an int or a pair of ints, got {v!r}")


def window_output_size(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    layer: str,
    x_shape: tuple[int, ...],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """Output size of a sliding window: ``Ho = 1 + (H + 2*pad - span) // stride``, likewise
    Wo, where a kernel of HH taps ``dilation`` apart spans ``dilation*(HH - 1) + 1`` rows.

    Raises ShapeError naming the layer and the shapes when ``Ho < 1`` or ``Wo < 1``, or when a
    stride or dilation is not positive or a padding negative.
    """
    (H, W), (HH, WW), (sh, sw), (ph, pw), (dil_h, dil_w) = hw, kernel, stride, pad, dilation
    if sh < 1 or sw < 1:
        raise ShapeError(f"{layer}: stride must be >= 1, got {stride}")
    if dil_h < 1 or dil_w < 1:
        raise ShapeError(f"{layer}: dilation must be >= 1, got {dilation}")
    if ph < 0 or pw < 0:
        raise ShapeError(f"{layer}: padding must be >= 0, got {pad}")
    if HH < 1 or WW < 1:
        raise ShapeError(f"{layer}: kernel must be at least 1x1, got {kernel}")
    Ho = 1 + (H + 2 * ph - dil_h * (HH - 1) - 1) // sh
    Wo = 1 + (W + 2 * pw - dil_w * (WW - 1) - 1) // sw
    if Ho < 1 or Wo < 1:
        spread = "" if (dil_h, dil_w) == (1, 1) else f", dilation {dilation}"
        raise ShapeError(
            f"{layer}: input {tuple(x_shape)} with kernel {HH}x{WW}, stride {stride}, "
            f"pad {pad}{spread} gives output {Ho}x{Wo} (< 1)"
        )
    return Ho, Wo


def conv_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    b_shape: tuple[int, ...] | None,
    stride: IntPair,
    pad: IntPair,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[int, int]:
    """Check conv2d shapes and return ``(Ho, Wo)``.

    x: (N, C, H, W); w: (F, C/groups, HH, WW), F a multiple of groups; b: (F,) or None.
    """
    if len(x_shape) != 4:
        raise ShapeError(f"conv2d: x must be (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ShapeError(f"conv2d: w must be (F, C/groups, HH, WW), got shape {tuple(w_shape)}")
    C, F = x_shape[1], w_shape[0]
    if not _is_int(groups) or groups < 1 or C % groups or F % groups:
        raise ShapeError(
            f"conv2d: groups ({groups!r}) must be a positive divisor of x's C={C} channels and "
            f"of w's F={F} filters"
        )
    if w_shape[1] * groups != C:
        expects = w_shape[1] if groups == 1 else f"{w_shape[1]} per group x {groups} groups"
        raise ShapeError(
            f"conv2d: x {tuple(x_shape)} has {C} channels but w {tuple(w_shape)} expects {expects}"
        )
    if b_shape is not None and tuple(b_shape) != (F,):
        raise ShapeError(f"conv2d: b must be ({F},), got shape {tuple(b_shape)}")
    return window_output_size(
        (x_shape[2], x_shape[3]),
        (w_shape[2], w_shape[3]),
        pair(stride, "stride"),
        pair(pad, "pad"),
        "conv2d",
        x_shape,
        pair(dilation, "dilation"),
    )


def pool_geometry(
    layer: str,
    x_shape: tuple[int, ...],
    kernel: IntPair,
    stride: IntPair | None,
    pad: IntPair,
    ceil_mode: bool = False,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Check pooling arguments; return ``(kernel, stride, pad, (Ho, Wo))`` as pairs.

    x: (N, C, H, W) with H, W >= 1. ``stride`` defaults to the kernel. As in PyTorch, padding
    may be at most half the kernel, so no window lies entirely in the padding.

    ``Ho = 1 + (H + 2*ph - kh) // sh`` (rows left over at the bottom are ignored), likewise Wo.
    With ``ceil_mode`` the division rounds up, ``Ho = 1 + ceil((H + 2*ph - kh) / sh)``, so the
    last window may run past the padded input (see :func:`pool_overhang`); as in PyTorch, a
    last window that would start in the bottom padding (at or past ``H + ph``) is dropped.
    """
    if len(x_shape) != 4:
        raise ShapeError(f"{layer}: x must be (N, C, H, W), got shape {tuple(x_shape)}")
    if x_shape[2] < 1 or x_shape[3] < 1:
        raise ShapeError(f"{layer}: x {tuple(x_shape)} has an empty feature map (H or W is 0)")
    k = pair(kernel, "kernel")
    s = k if stride is None else pair(stride, "stride")
    p = pair(pad, "pad")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ShapeError(f"{layer}: pad {p} must be at most half the kernel {k}")
    hw = (x_shape[2], x_shape[3])
    if not ceil_mode:
        return k, s, p, window_output_size(hw, k, s, p, layer, x_shape)
    # Rounding up equals rounding down on an input grown by stride - 1 rows (and columns).
    grown = (hw[0] + s[0] - 1, hw[1] + s[1] - 1)
    out = window_output_size(grown, k, s, p, layer, x_shape)
    # Drop a last window that starts in the bottom padding; never the first, which starts at 0.
    Ho, Wo = (o - int((o - 1) * st >= n + q) for o, st, n, q in zip(out, s, hw, p, strict=True))
    return k, s, p, (Ho, Wo)


def pool_overhang(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[int, int]:
    """How many rows and columns the last windows reach past the bottom and right of the
    padded input: ``max(0, (Ho - 1)*sh + kh - (H + 2*ph))``, likewise for columns.

    Always 0 without ``ceil_mode``. Kernels grow the padded input by this much (:func:`pad_spatial`)
    with elements that count for nothing: -inf for max pooling, zeros left out of the divisor
    for average pooling.
    """
    return (
        max(0, (out_hw[0] - 1) * stride[0] + kernel[0] - (hw[0] + 2 * pad[0])),
        max(0, (out_hw[1] - 1) * stride[1] + kernel[1] - (hw[1] + 2 * pad[1])),
    )


def adaptive_geometry(layer: str, x_shape: tuple[int, ...], output: IntPair) -> tuple[int, int]:
    """Check adaptive pooling arguments; return the output size ``(Ho, Wo)``.

    x: (N, C, H, W) with H, W >= 1; output: an int or (Ho, Wo) pair, each >= 1 (it may exceed
    the input's size: windows then repeat input elements).
    """
    if len(x_shape) != 4:
        raise ShapeError(f"{layer}: x must be (N, C, H, W), got shape {tuple(x_shape)}")
    Ho, Wo = pair(output, "output")
    if Ho < 1 or Wo < 1:
        raise ShapeError(f"{layer}: output size must be at least 1x1, got {output!r}")
    if x_shape[2] < 1 or x_shape[3] < 1:
        raise ShapeError(f"{layer}: x {tuple(x_shape)} has an empty feature map (H or W is 0)")
    return Ho, Wo


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """The input range ``[start, end)`` of each of ``out`` adaptive-pooling cells along an axis
    of ``size``, as PyTorch: ``start = floor(i*size/out)``, ``end = ceil((i+1)*size/out)``.

    Neighbouring ranges overlap where out does not divide size, and differ in length.
    """
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def pad_spatial(
    x: np.ndarray, pad: IntPair, value: float = 0.0, overhang: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Pad the two spatial axes of x: (N, C, H, W) -> (N, C, H + 2*ph + eh, W + 2*pw + ew):
    ``pad`` on every side, and ``overhang`` (eh, ew) more at the bottom and right (where a
    ceil-mode pool's last windows reach, :func:`pool_overhang`).

    Returns x itself (no copy) when there is nothing to pad. ``value`` is the fill: 0 for conv
    and average pooling, ``-inf`` for max pooling.
    """
    import numpy as np

    (ph, pw), (eh, ew) = pair(pad, "pad"), overhang
    if ph == pw == eh == ew == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=value)


def check_groups(groups: object, x_shape: tuple[int, ...]) -> int:
    """Group norm's ``groups`` as an int: a positive divisor of x's channels, else a
    ShapeError (the same words on every backend)."""
    C = x_shape[1]
    if not _is_int(groups) or int(groups) < 1 or C % int(groups):  # type: ignore[call-overload]
        raise ShapeError(
            f"groupnorm: groups ({groups!r}) must be a positive divisor of the C={C} channels "
            f"of x {tuple(x_shape)}"
        )
    return int(groups)  # type: ignore[call-overload]


def check_batch_statistics(x_shape: tuple[int, ...]) -> None:
    """Batch norm in training needs more than one value per channel, as in torch.

    x: (N, D) (statistics over N) or (N, C, H, W) (over N, H, W). With one value the batch
    variance is 0 and its unbiased estimate, kept for eval, is undefined.
    """
    values = x_shape[0] * math.prod(x_shape[2:])
    if values == 1:  # none at all (an empty batch) is allowed: there is nothing to normalise
        raise ShapeError(
            f"batchnorm: training needs more than 1 value per channel, got x {tuple(x_shape)} "
            "(use a batch of 2 or more, or eval mode)"
        )
