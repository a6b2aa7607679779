"""Dropout (inverted dropout, as in PyTorch).

    forward:   y = x · m / (1 - p)        m ~ Bernoulli(1 - p), drawn once per element
    backward:  dy/dx = m / (1 - p)        so  grad_x = grad_y · m / (1 - p)

Dividing by the keep probability during training keeps E[y] = x, so nothing
changes at evaluation time, where dropout is the identity. The mask is drawn
exactly as ``torch.nn.functional.dropout`` draws it on the CPU (``bernoulli_``
on an empty tensor like x, 1.0 or 0.0), so the same seed drops the same
elements. Forward multiplies by that draw; the mask is saved as bool (1 byte
per element) and returned as a second, non-differentiable output.
"""
import torch

from ._masks import as_factor, save_mask


def draw_keep(x: torch.Tensor, p: float) -> torch.Tensor:
    """The draw, as torch's CPU dropout makes it: 1.0 with probability 1 - p, else 0.0."""
    return torch.empty_like(x).bernoulli_(1 - p)


def dropout_forward(x: torch.Tensor, p: float):
    keep = draw_keep(x, p)
    return dropout_derivative_times(x, keep, p), keep.bool()


def dropout_derivative_times(v: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx is 1/(1-p) where the element is kept and 0 elsewhere.
    ``keep``: 1 where kept, 0 where dropped (the bool mask, or the 0/1 draw itself).

    Dropout is linear in x (y = x · dy/dx), so forward uses this too, with v = x.
    """
    # p == 1 drops everything: the scale 1/(1-p) would be inf and inf·0 NaN.
    scale = 0.0 if p == 1 else 1 / (1 - p)
    return (v * as_factor(keep)).mul_(scale)  # scaled where it is: one new tensor, not two


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
        return dropout_derivative_times(grad_y, mask, ctx.p), None

    @staticmethod
    def jvp(ctx, x_t, _p_t):
        (mask,) = ctx.saved_tensors
        return dropout_derivative_times(x_t, mask, ctx.p), None
