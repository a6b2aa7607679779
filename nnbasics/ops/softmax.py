"""Softmax and log-softmax along one dimension.

    softmax:      y_i = e^(x_i) / Σ_j e^(x_j)
                  dL/dx_i = y_i (g_i - Σ_j g_j y_j)          (g = dL/dy)
    log_softmax:  z_i = x_i - log Σ_j e^(x_j)
                  dL/dx_i = g_i - e^(z_i) Σ_j g_j            (g = dL/dz, e^z = softmax)

Both derivatives need only the output, so the output is saved.

Stability: e^x overflows for large x. Softmax is unchanged when the same m is
subtracted from every x_j, so m = max_j x_j is subtracted first: then every
exponent is ≤ 0, the largest term is exactly e^0 = 1, and logits of ±1e4 are
fine. The max is only a shift, so no gradient flows through it (``detach``).
"""
from typing import ClassVar

import torch


def shifted(x, dim):
    """x - max(x) along dim: the same softmax, with every exponent ≤ 0."""
    if x.numel() == 0:  # nothing to shift (and amax refuses an empty dimension)
        return x
    return x - x.amax(dim, keepdim=True).detach()


def softmax_forward(x: torch.Tensor, dim: int) -> torch.Tensor:
    e = torch.exp(shifted(x, dim))
    return e / e.sum(dim, keepdim=True)


def log_softmax_forward(x: torch.Tensor, dim: int) -> torch.Tensor:
    s = shifted(x, dim)
    return s - torch.log(torch.exp(s).sum(dim, keepdim=True))


def softmax_jacobian_times(v, y, dim):
    """J v, with J = dy/dx = diag(y) - y yᵀ along dim. J is symmetric, so this one product is
    both the backward (Jᵀ grad_y) and the jvp (J x_t)."""
    return y * (v - (v * y).sum(dim, keepdim=True))


def log_softmax_backward(grad_z, z, dim):
    return grad_z - torch.exp(z) * grad_z.sum(dim, keepdim=True)


class Softmax(torch.autograd.Function):
    """y = softmax(x, dim). x: any shape; y: same shape, summing to 1 along dim."""

    generate_vmap_rule = True
    autocast: ClassVar = {"cuda": "float32"}  # under CUDA autocast: computed in float32, as torch.softmax

    @staticmethod
    def forward(x, dim):
        return softmax_forward(x, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return softmax_jacobian_times(grad_y, y, ctx.dim), None

    @staticmethod
    def jvp(ctx, x_t, _dim_t):
        (y,) = ctx.saved_tensors
        return softmax_jacobian_times(x_t, y, ctx.dim)


class LogSoftmax(torch.autograd.Function):
    """z = log_softmax(x, dim). x: any shape; z: same shape."""

    generate_vmap_rule = True
    autocast: ClassVar = {"cuda": "float32"}  # under CUDA autocast: computed in float32, as torch.log_softmax

    @staticmethod
    def forward(x, dim):
        return log_softmax_forward(x, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad_z):
        (z,) = ctx.saved_tensors
        return log_softmax_backward(grad_z, z, ctx.dim), None

    @staticmethod
    def jvp(ctx, x_t, _dim_t):
        # Jacobian J = I - 1 softmaxᵀ (row i: δ_ij - p_j), so J·dx = dx - Σ_j p_j dx_j.
        (z,) = ctx.saved_tensors
        return x_t - (torch.exp(z) * x_t).sum(ctx.dim, keepdim=True)
