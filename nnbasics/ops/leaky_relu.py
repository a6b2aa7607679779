"""Leaky ReLU.

    forward:   y = x if x > 0 else a·x                  (a = negative_slope)
    backward:  dy/dx = 1 if x > 0 else a                so  grad_x = grad_y · (1 or a)

At x = 0 the slope is a, as in PyTorch.

What to save: backward needs only where x was positive. For a ≥ 0 the output
tells: y > 0 exactly where x > 0 (y = a·x ≤ 0 elsewhere, NaN stays NaN and
fails both tests), so y is saved, the tensor the next layer keeps anyway (the
rule is explained in ``relu.py``). For a < 0, y = a·x is positive where x is
negative and y no longer tells; then x is saved, as ``torch.nn.functional.leaky_relu``
always saves it. Either way the gradient is ``where(s > 0, grad_y, a·grad_y)``
with s the saved tensor.
"""
import torch


def leaky_relu_forward(x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    return torch.where(x > 0, x, x * negative_slope)


def leaky_relu_saves_output(negative_slope: float) -> bool:
    """Whether the sign of y is the sign of x, so that backward can work from y."""
    return negative_slope >= 0


def leaky_relu_derivative_times(v: torch.Tensor, s: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """v · dy/dx, elementwise: v where s > 0, a·v elsewhere; s is y (a ≥ 0) or x (a < 0)."""
    return torch.where(s > 0, v, v * negative_slope)


class LeakyReLU(torch.autograd.Function):
    """y = leaky_relu(x, a). x: any shape; y: same shape. Saves y if a ≥ 0, else x."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, negative_slope):
        return leaky_relu_forward(x, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.negative_slope = inputs
        s = output if leaky_relu_saves_output(ctx.negative_slope) else x
        ctx.save_for_backward(s)
        ctx.save_for_forward(s)

    @staticmethod
    def backward(ctx, grad_y):
        (s,) = ctx.saved_tensors
        return leaky_relu_derivative_times(grad_y, s, ctx.negative_slope), None

    @staticmethod
    def jvp(ctx, x_t, _slope_t):
        (s,) = ctx.saved_tensors
        return leaky_relu_derivative_times(x_t, s, ctx.negative_slope)


class LeakyReLU_(LeakyReLU):
    """leaky_relu_(x, a) for a ≥ 0: y written into x, which is returned (``mark_dirty``, as in
    ``relu.py``'s ReLU_). Only for a ≥ 0: then backward reads y, and x's old values are not needed."""

    @staticmethod
    def forward(x, negative_slope):
        return x.copy_(leaky_relu_forward(x, negative_slope))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        LeakyReLU.setup_context(ctx, inputs, output)
