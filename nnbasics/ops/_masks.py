"""Saving a boolean mask for backward: shared by Dropout and ActivationDropout.

Each of these Functions needs mostly *where* something held (kept by dropout, and x > 0
or lo < x < hi for the activation before it): a bool mask, one byte per element. The
mask is computed in forward but is neither an input nor an output, and ``torch.func`` needs every saved tensor to be one of those; so
forward returns it as a second output, and ``save_mask`` marks it as data, not a result.
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


def as_factor(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask as a factor to multiply by: a bool mask's bytes viewed as uint8 (no copy, same
    values), anything else as it is. Multiplying by it gives the same numbers as by the bool mask,
    but PyTorch's CPU multiply has a vectorized loop for float × uint8 and not for float × bool:
    3× faster on a (128, 1024) float32 tensor (28 µs vs 87 µs, benchmarks/results/README.md)."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask
