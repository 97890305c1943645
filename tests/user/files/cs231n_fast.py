"""A correct CS231n-style file with vectorised conv and pooling (the ``_fast`` names), fast
enough to train the three-layer net on."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_forward_fast(x, w, b, conv_param):
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    HH, WW = w.shape[2:]
    win = sliding_window_view(xp, (HH, WW), axis=(2, 3))[:, :, ::s, ::s]  # N C Ho Wo HH WW
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # N Ho Wo F
    return out.transpose(0, 3, 1, 2) + b[None, :, None, None], (x, w, conv_param)


def conv_backward_fast(dout, cache):
    x, w, conv_param = cache
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    HH, WW = w.shape[2:]
    Ho, Wo = dout.shape[2:]
    win = sliding_window_view(xp, (HH, WW), axis=(2, 3))[:, :, ::s, ::s]
    dw = np.tensordot(dout, win, axes=([0, 2, 3], [0, 2, 3]))  # F C HH WW
    dxp = np.zeros_like(xp)
    for i in range(HH):
        for j in range(WW):
            contrib = np.tensordot(dout, w[:, :, i, j], axes=([1], [0]))  # N Ho Wo C
            dxp[:, :, i : i + s * Ho : s, j : j + s * Wo : s] += contrib.transpose(0, 3, 1, 2)
    H, W = x.shape[2:]
    return dxp[:, :, p : p + H, p : p + W], dw, dout.sum(axis=(0, 2, 3))


def max_pool_forward_fast(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    win = sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::s, ::s]
    return win.max(axis=(4, 5)), (x, pool_param)


def max_pool_backward_fast(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    win = sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::s, ::s]
    N, C, Ho, Wo = dout.shape
    flat = win.reshape(N, C, Ho, Wo, -1).argmax(axis=4)
    a, b = np.unravel_index(flat, (ph, pw))
    dx = np.zeros_like(x)
    n, c, i, j = np.indices((N, C, Ho, Wo))
    np.add.at(dx, (n, c, i * s + a, j * s + b), dout)
    return dx


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    return dout * (x > 0)


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)


def softmax_loss(x, y):
    z = x - x.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(p[np.arange(n), y]).mean()
    p[np.arange(n), y] -= 1
    return loss, p / n
