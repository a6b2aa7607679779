"""Hardtanh: a clamp.

    forward:   y = min(max(x, lo), hi)
    backward:  dy/dx = 1 if lo < x < hi else 0          so  grad_x = grad_y · [lo < x < hi]

At the corners x = lo and x = hi the derivative is 0, as in PyTorch. The mask
of the open interval is saved (1 byte per element) and returned as a second,
non-differentiable output; it is written ``not (x <= lo or x >= hi)`` so that
a NaN passes its gradient through as in ``torch.nn.functional.hardtanh``.
"""
import torch

from ._masks import save_mask


def hardtanh_forward(x: torch.Tensor, min_val: float, max_val: float):
    mask = torch.logical_not((x <= min_val) | (x >= max_val))
    return x.clamp(min_val, max_val), mask


def hardtanh_derivative_times(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx is 1 where lo < x < hi and 0 elsewhere, i.e. the mask."""
    return v * mask


class Hardtanh(torch.autograd.Function):
    """(y, mask) = hardtanh(x, lo, hi). x: any shape; y, mask: same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, min_val, max_val):
        return hardtanh_forward(x, min_val, max_val)

    @staticmethod
    def setup_context(ctx, inputs, output):
        save_mask(ctx, output[1])

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None, None
        (mask,) = ctx.saved_tensors
        return hardtanh_derivative_times(grad_y, mask), None, None

    @staticmethod
    def jvp(ctx, x_t, _lo_t, _hi_t):
        (mask,) = ctx.saved_tensors
        return hardtanh_derivative_times(x_t, mask), None
