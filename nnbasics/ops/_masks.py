"""Saving a boolean mask for backward: shared by ReLU, LeakyReLU, Hardtanh and Dropout.

Each of these Functions needs only *where* something held (x > 0, lo < x < hi, kept by
dropout): a bool mask, one byte per element. The mask is computed in forward but is neither
an input nor an output, and ``torch.func`` needs every saved tensor to be one of those; so
forward returns it as a second output, and ``save_mask`` marks it as data, not a result.
"""
import torch


def save_mask(ctx, mask: torch.Tensor) -> None:
    """Keep ``mask``, returned by forward as a second output, for backward and jvp.

    It is marked non-differentiable (it is a function of x, but a piecewise constant
    one), and gradients are not materialized: autograd would otherwise allocate a zero
    "gradient of the mask" for every backward.
    """
    ctx.mark_non_differentiable(mask)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(mask)
    ctx.save_for_forward(mask)
