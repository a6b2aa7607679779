"""Dropout (inverted dropout, as in PyTorch).

    forward:   y = x · m / (1 - p)        m ~ Bernoulli(1 - p), drawn once per element
    backward:  dy/dx = m / (1 - p)        so  grad_x = grad_y · m / (1 - p)

Dividing by the keep probability during training keeps E[y] = x, so nothing
changes at evaluation time, where dropout is the identity. The mask is drawn
exactly as ``torch.nn.functional.dropout`` draws it on the CPU (``bernoulli_``
on an empty tensor like x), so the same seed drops the same elements. It is
saved as bool (1 byte per element) and returned as a second,
non-differentiable output.
"""
import torch

from .relu import save_mask


def dropout_forward(x: torch.Tensor, p: float):
    keep = torch.empty_like(x).bernoulli_(1 - p)  # 1.0 with probability 1 - p, else 0.0
    return dropout_apply(x, keep, p)


def dropout_apply(x: torch.Tensor, keep: torch.Tensor, p: float):
    """(y, mask) from x and the drawn 0/1 tensor ``keep``: the arithmetic, apart from the random draw."""
    mask = keep.bool()
    return dropout_backward(x, mask, p), mask


def dropout_backward(grad_y: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    # p == 1 drops everything: the scale 1/(1-p) would be inf and inf·0 NaN.
    scale = 0.0 if p == 1 else 1 / (1 - p)
    return grad_y * mask * scale


class Dropout(torch.autograd.Function):
    """(y, mask) = dropout(x, p) in training mode. x: any shape; y, mask: same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, p):
        return dropout_forward(x, p)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.p = inputs[1]
        save_mask(ctx, output[1])

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None
        (mask,) = ctx.saved_tensors
        return dropout_backward(grad_y, mask, ctx.p), None

    @staticmethod
    def jvp(ctx, x_t, _p_t):
        (mask,) = ctx.saved_tensors
        return dropout_backward(x_t, mask, ctx.p), None
