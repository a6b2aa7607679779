"""Leaky ReLU.

    forward:   y = x if x > 0 else a·x                  (a = negative_slope)
    backward:  dy/dx = 1 if x > 0 else a                so  grad_x = grad_y · (1 or a)

As for ReLU, backward needs only where x was positive: a 1-byte mask is saved
and returned as a second, non-differentiable output. At x = 0 the slope is a,
as in PyTorch.
"""
import torch

from ._masks import save_mask


def leaky_relu_forward(x: torch.Tensor, negative_slope: float):
    mask = x > 0
    return torch.where(mask, x, x * negative_slope), mask


def leaky_relu_derivative_times(v: torch.Tensor, mask: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx is 1 where x > 0 and a elsewhere."""
    return torch.where(mask, v, v * negative_slope)


class LeakyReLU(torch.autograd.Function):
    """(y, mask) = leaky_relu(x, a). x: any shape; y, mask: same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, negative_slope):
        return leaky_relu_forward(x, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.negative_slope = inputs[1]
        save_mask(ctx, output[1])

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None
        (mask,) = ctx.saved_tensors
        return leaky_relu_derivative_times(grad_y, mask, ctx.negative_slope), None

    @staticmethod
    def jvp(ctx, x_t, _slope_t):
        (mask,) = ctx.saved_tensors
        return leaky_relu_derivative_times(x_t, mask, ctx.negative_slope), None
