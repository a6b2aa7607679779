"""Sigmoid.

    forward:   y = σ(x) = 1 / (1 + e^(-x))
    backward:  dy/dx = σ(x)(1 - σ(x)) = y (1 - y)        so  grad_x = grad_y · y · (1 - y)

The derivative needs only the output, so the output is what we save.

Stability: e^(-x) overflows for x ≲ -710 in float64 (-88 in float32). With
e = e^(-|x|), which lies in (0, 1] and never overflows,

    σ(x) = 1 / (1 + e)      for x ≥ 0
    σ(x) = e / (1 + e)      for x < 0     (multiply top and bottom by e^x)

so σ(-1000) is exactly 0 and σ(1000) exactly 1, with no inf on the way.
"""
import torch


def sigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(-x.abs())
    r = 1 / (1 + e)
    return torch.where(x >= 0, r, e * r)


def sigmoid_derivative_times(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx = y (1 - y), from the output y. Backward passes grad_y as v, jvp the tangent."""
    return v * y * (1 - y)


class Sigmoid(torch.autograd.Function):
    """y = σ(x), elementwise. x: any shape; y: same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return sigmoid_forward(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return sigmoid_derivative_times(grad_y, y)

    @staticmethod
    def jvp(ctx, x_t):
        (y,) = ctx.saved_tensors
        return sigmoid_derivative_times(x_t, y)
