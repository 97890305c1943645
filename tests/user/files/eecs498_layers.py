"""A correct EECS 498-style file: classes of static methods on torch tensors."""

import torch
import torch.nn.functional as F


class Linear:
    @staticmethod
    def forward(x, w, b):
        return x.reshape(x.shape[0], -1).mm(w) + b, (x, w, b)

    @staticmethod
    def backward(dout, cache):
        x, w, _ = cache
        dx = dout.mm(w.t()).reshape(x.shape)
        return dx, x.reshape(x.shape[0], -1).t().mm(dout), dout.sum(dim=0)


class ReLU:
    @staticmethod
    def forward(x):
        return x.clamp(min=0), x

    @staticmethod
    def backward(dout, cache):
        return dout * (cache > 0)


class Conv:
    @staticmethod
    def forward(x, w, b, conv_param):
        s, p = conv_param["stride"], conv_param["pad"]
        return F.conv2d(x, w, b, stride=s, padding=p), (x, w, conv_param)

    @staticmethod
    def backward(dout, cache):
        x, w, conv_param = cache
        s, p = conv_param["stride"], conv_param["pad"]
        dx = torch.nn.grad.conv2d_input(x.shape, w, dout, stride=s, padding=p)
        dw = torch.nn.grad.conv2d_weight(x, w.shape, dout, stride=s, padding=p)
        return dx, dw, dout.sum(dim=(0, 2, 3))


class MaxPool:
    @staticmethod
    def forward(x, pool_param):
        k = (pool_param["pool_height"], pool_param["pool_width"])
        out, idx = F.max_pool2d(x, k, pool_param["stride"], return_indices=True)
        return out, (x, idx, k, pool_param["stride"])

    @staticmethod
    def backward(dout, cache):
        x, idx, k, s = cache
        return F.max_unpool2d(dout, idx, k, s, output_size=x.shape[2:])


class BatchNorm:
    @staticmethod
    def forward(x, gamma, beta, bn_param):
        mode, eps, momentum = (
            bn_param["mode"],
            bn_param.get("eps", 1e-5),
            bn_param.get("momentum", 0.9),
        )
        rm = bn_param.get("running_mean", torch.zeros(x.shape[1], dtype=x.dtype))
        rv = bn_param.get("running_var", torch.zeros(x.shape[1], dtype=x.dtype))
        if mode == "train":
            mu, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
            bn_param["running_mean"] = momentum * rm + (1 - momentum) * mu
            bn_param["running_var"] = momentum * rv + (1 - momentum) * var
            std = (var + eps).sqrt()
            xhat = (x - mu) / std
            return gamma * xhat + beta, (xhat, gamma, std)
        return gamma * (x - rm) / (rv + eps).sqrt() + beta, None

    @staticmethod
    def backward(dout, cache):
        xhat, gamma, std = cache
        dxhat = dout * gamma
        dx = (dxhat - dxhat.mean(dim=0) - xhat * (dxhat * xhat).mean(dim=0)) / std
        return dx, (dout * xhat).sum(dim=0), dout.sum(dim=0)

    backward_alt = backward


class SpatialBatchNorm:
    @staticmethod
    def forward(x, gamma, beta, bn_param):
        N, C, H, W = x.shape
        out, cache = BatchNorm.forward(x.permute(0, 2, 3, 1).reshape(-1, C), gamma, beta, bn_param)
        return out.reshape(N, H, W, C).permute(0, 3, 1, 2), cache

    @staticmethod
    def backward(dout, cache):
        N, C, H, W = dout.shape
        dx, dgamma, dbeta = BatchNorm.backward(dout.permute(0, 2, 3, 1).reshape(-1, C), cache)
        return dx.reshape(N, H, W, C).permute(0, 3, 1, 2), dgamma, dbeta


class Dropout:
    @staticmethod
    def forward(x, dropout_param):
        p, mode = dropout_param["p"], dropout_param["mode"]
        if "seed" in dropout_param:
            torch.manual_seed(dropout_param["seed"])
        if mode != "train":
            return x, (dropout_param, None)
        mask = (torch.rand(x.shape, dtype=x.dtype) >= p).to(x.dtype) / (1 - p)
        return x * mask, (dropout_param, mask)

    @staticmethod
    def backward(dout, cache):
        dropout_param, mask = cache
        return dout * mask if dropout_param["mode"] == "train" else dout
