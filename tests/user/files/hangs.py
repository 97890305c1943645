"""A conv that never returns, beside a correct ReLU."""

import numpy as np


def conv_forward_naive(x, w, b, conv_param):
    while True:
        pass


def conv_backward_naive(dout, cache):
    raise AssertionError("never reached")


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    return dout * (x > 0)
