"""Dropout (inverted dropout, as in PyTorch).

    forward:   y = x · m / (1 - p)        m ~ Bernoulli(1 - p), drawn once per element
    backward:  dy/dx = m / (1 - p)        so  grad_x = grad_y · m / (1 - p)

Dividing by the keep probability during training keeps E[y] = x, so nothing
changes at evaluation time, where dropout is the identity. The mask m is saved as
bool (1 byte per element) and returned as a second, non-differentiable output
(``_saved_mask.py``).

The draw: an element is kept where a uniform random number u in [0, 1) is at least p,
which happens with probability 1 - p. (torch draws its mask with ``bernoulli_``, another
stream: the same seed gives other masks here.)

``Dropout_`` is the in-place variant (``dropout(x, inplace=True)``, ``mark_dirty`` as in
``relu.py``'s ReLU_).
"""
import torch

from ._saved_mask import save_mask


def draw_keep(x: torch.Tensor, p: float) -> torch.Tensor:
    """The mask m: a bool tensor shaped like x, True (kept) with probability 1 - p."""
    return torch.rand(x.shape, device=x.device) >= p


def dropout_derivative_times(v: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx is 1/(1-p) where the element is kept and 0 elsewhere.

    Dropout is linear in x (y = x · dy/dx), so forward uses this too, with v = x.
    """
    # p == 1 drops everything: the scale 1/(1-p) would be inf and inf·0 NaN.
    scale = 0.0 if p == 1 else 1 / (1 - p)
    return v * keep * scale


def dropout_forward(x: torch.Tensor, p: float):
    keep = draw_keep(x, p)
    return dropout_derivative_times(x, keep, p), keep


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


class Dropout_(Dropout):
    """dropout_(x, p): y written into x, which is returned with the mask (``mark_dirty``)."""

    @staticmethod
    def forward(x, p):
        y, keep = dropout_forward(x, p)
        return x.copy_(y), keep

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        Dropout.setup_context(ctx, inputs, output)
