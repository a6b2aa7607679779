"""Sigmoid.

    forward:   y = σ(x) = 1 / (1 + e^(-x))
    backward:  dy/dx = σ(x)(1 - σ(x)) = y (1 - y)        so  grad_x = grad_y · y · (1 - y)

The derivative needs only the output, so the output is what we save.

Stability: e^(-x) overflows for x ≲ -710 in float64 (-88 in float32). Both
exponents below are ≤ 0, so neither overflows:

    σ(x) = e^min(x, 0) / (1 + e^(-|x|))

For x ≥ 0 this is 1 / (1 + e^(-x)); for x < 0 it is e^x / (1 + e^x), the same
fraction multiplied top and bottom by e^x. So σ(-1000) is exactly 0 and
σ(1000) exactly 1, with no inf on the way. (One formula for both signs, rather
than a ``where`` choosing between two, also compiles to a faster loop.)
"""
import torch


def sigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x.clamp_max(0)) / (1 + torch.exp(-x.abs()))


def sigmoid_backward(grad_y: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return grad_y * y * (1 - y)


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
        return sigmoid_backward(grad_y, y)

    @staticmethod
    def jvp(ctx, x_t):
        (y,) = ctx.saved_tensors
        return sigmoid_backward(x_t, y)
