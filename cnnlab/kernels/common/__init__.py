"""The numpy kernels that the ``naive`` and ``im2col`` backends share (one definition each).

Everything here except convolution and windowed pooling, which differ between the two
backends; see :mod:`cnnlab.kernels` for the contract.
"""

from __future__ import annotations

from cnnlab.kernels.common.activation import relu_backward, relu_forward
from cnnlab.kernels.common.dropout import dropout_backward, dropout_forward, dropout_mask
from cnnlab.kernels.common.linear import (
    add_backward,
    add_forward,
    flatten_backward,
    flatten_forward,
    linear_backward,
    linear_forward,
)
from cnnlab.kernels.common.loss import softmax_cross_entropy
from cnnlab.kernels.common.lrn import lrn_backward, lrn_forward
from cnnlab.kernels.common.norm import (
    batchnorm_backward,
    batchnorm_forward,
    groupnorm_backward,
    groupnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from cnnlab.kernels.common.pool_global import global_avgpool_backward, global_avgpool_forward

__all__ = [
    "add_backward",
    "add_forward",
    "batchnorm_backward",
    "batchnorm_forward",
    "dropout_backward",
    "dropout_forward",
    "dropout_mask",
    "flatten_backward",
    "flatten_forward",
    "global_avgpool_backward",
    "global_avgpool_forward",
    "groupnorm_backward",
    "groupnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "linear_backward",
    "linear_forward",
    "lrn_backward",
    "lrn_forward",
    "relu_backward",
    "relu_forward",
    "softmax_cross_entropy",
]
