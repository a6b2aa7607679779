"""Saving a bool mask for backward (Dropout, ActivationDropout).

Each of these Functions needs mostly *where* something held (kept by dropout, and x > 0
or lo < x < hi for the activation before it): a bool mask, one byte per element. The
mask is computed in forward but is neither an input nor an output, and ``torch.func`` needs
every saved tensor to be one of those; so forward returns it as a second output, and
``save_mask`` marks it as data, not a result.
"""
import torch


def save_mask(ctx, mask: torch.Tensor, *others: torch.Tensor) -> None:
    """Keep ``mask``, returned by forward as a second output, for backward and jvp (and ``others``,
    inputs or outputs, after it in ``ctx.saved_tensors``).

    It is marked non-differentiable (it is a function of x, but a piecewise constant
    one), and gradients are not materialized: autograd would otherwise allocate a zero
    "gradient of the mask" for every backward.
    """
    ctx.mark_non_differentiable(mask)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(mask, *others)
    ctx.save_for_forward(mask, *others)
