"""Layer kernels: forward/backward pairs, one module per layer family, one folder per backend.

Every kernel set exposes the same functions with the same signatures (CS231n's pair contract).
Arrays are numpy; kernels keep the input dtype (float32 or float64) and never promote.

========================  =========================================================================
function                  contract
========================  =========================================================================
conv2d_forward            ``(x, w, b, stride=1, pad=0) -> (out, cache)``; x: (N, C, H, W),
                          w: (F, C, HH, WW), b: (F,) or None; stride, pad: int or (h, w) pair;
                          out: (N, F, Ho, Wo), ``Ho = 1 + (H + 2*pad - HH) // stride``
conv2d_backward           ``(dout, cache, need_dx=True) -> (dx, dw, db)``; db is None when b was
                          None, dx when need_dx is False (a net's first layer)
maxpool2d_forward         ``(x, kernel, stride=None, pad=0, ties="first") -> (out, cache)``;
                          padding is -inf; ``ties="first"`` routes the gradient to the first
                          maximum in row-major window order (as PyTorch), ``"all"`` to every one
maxpool2d_backward        ``(dout, cache) -> dx``
avgpool2d_forward         ``(x, kernel, stride=None, pad=0) -> (out, cache)``; padding counts
                          as zeros (PyTorch's ``count_include_pad=True``)
avgpool2d_backward        ``(dout, cache) -> dx``
global_avgpool_forward    ``(x) -> (out, cache)``; x: (N, C, H, W) -> out: (N, C)
global_avgpool_backward   ``(dout, cache) -> dx``
relu_forward/backward     ``(x) -> (out, cache)``; ``(dout, cache) -> dx``
linear_forward/backward   ``(x, w, b) -> (out, cache)``, x: (N, D), w: (M, D), b: (M,) or None,
                          out = x @ w.T + b; ``(dout, cache) -> (dx, dw, db)``
flatten_forward/backward  ``(x) -> (out, cache)``, out: (N, prod(rest)); ``(dout, cache) -> dx``
dropout_forward/backward  ``(x, mask, p) -> (out, cache)``, mask: bool keep-mask of x's shape,
                          out = x * mask / (1 - p) (inverted dropout); ``(dout, cache) -> dx``
softmax_cross_entropy     ``(logits, y) -> (loss, dlogits)``; logits: (N, K), y: (N,) int;
                          mean over the batch
batchnorm_forward         ``(x, gamma, beta, running_mean, running_var, train=True, momentum=0.1,
                          eps=1e-5) -> (out, cache)``; x: (N, D) or (N, C, H, W) (spatial:
                          statistics over N, H, W); updates the running statistics in place when
                          training, as PyTorch does (unbiased running variance)
batchnorm_backward        ``(dout, cache, mode="fused") -> (dx, dgamma, dbeta)``; mode "staged" or
                          "fused"
layernorm_forward         ``(x, gamma, beta, eps=1e-5) -> (out, cache)``; per sample over all
                          non-batch axes; gamma, beta: (C,) per channel (or (D,) for dense x)
layernorm_backward        ``(dout, cache) -> (dx, dgamma, dbeta)``
groupnorm_forward         ``(x, gamma, beta, groups, eps=1e-5) -> (out, cache)``; x: (N, C, H, W)
groupnorm_backward        ``(dout, cache) -> (dx, dgamma, dbeta)``
lrn_forward/backward      ``(x, size=5, alpha=1e-4, beta=0.75, k=2.0) -> (out, cache)``,
                          x: (N, C, H, W), out_c = x_c / (k + alpha/size * sum of x^2 over the
                          channels c - size//2 .. c + (size-1)//2, zero-padded)^beta (PyTorch's
                          ``local_response_norm``); ``(dout, cache) -> dx``
add_forward/backward      ``(a, b) -> (out, cache)``; ``(dout, cache) -> (da, db)`` (residual add)
========================  =========================================================================

``naive`` (loops that mirror the maths) and ``im2col`` (vectorised) differ in conv and pooling;
the other layers have one numpy definition in :mod:`cnnlab.kernels.common` that both re-export.
:mod:`cnnlab.kernels.torch` provides the same functions through PyTorch ops and autograd.
"""
