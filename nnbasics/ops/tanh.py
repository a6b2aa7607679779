"""Tanh.

    forward:   y = tanh(x) = (e^x - e^(-x)) / (e^x + e^(-x))
    backward:  dy/dx = 1 - tanh(x)² = 1 - y²              so  grad_x = grad_y · (1 - y²)

Like the sigmoid (tanh(x) = 2σ(2x) - 1), the derivative is a function of the
output alone, so the output is saved. The forward is the elementary function
``torch.tanh``, just as ``torch.exp`` is for the sigmoid: what this file
teaches is the derivative.
"""
import torch


def tanh_forward(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


def tanh_derivative_times(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx = 1 - y², from the output y. Backward passes grad_y as v, jvp the tangent."""
    return v * (1 - y * y)


class Tanh(torch.autograd.Function):
    """y = tanh(x), elementwise. x: any shape; y: same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return tanh_forward(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return tanh_derivative_times(grad_y, y)

    @staticmethod
    def jvp(ctx, x_t):
        (y,) = ctx.saved_tensors
        return tanh_derivative_times(x_t, y)
