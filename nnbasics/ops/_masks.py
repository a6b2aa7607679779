"""Boolean masks: saving one for backward (Dropout, ActivationDropout), multiplying and selecting by one.

Each of these Functions needs mostly *where* something held (kept by dropout, and x > 0
or lo < x < hi for the activation before it): a bool mask, one byte per element. The
mask is computed in forward but is neither an input nor an output, and ``torch.func`` needs every saved tensor to be one of those; so
forward returns it as a second output, and ``save_mask`` marks it as data, not a result.
"""
import torch

from .._torch_private import has_storage


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


_SAME_SIZE_INT = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16,
                  torch.float16: torch.int16}


def where_else_zero(keep: torch.Tensor, v: torch.Tensor, *, layout_of: str = "keep") -> torch.Tensor:
    """``torch.where(keep, v, 0)``: v where the bool ``keep`` is True, +0 elsewhere (where v is NaN or
    infinite too), the same bits, in the layout of ``keep`` as ``torch.where`` gives it, or of v
    (``layout_of="v"``, as ``v.clone().masked_fill_(~keep, 0)`` gives it).

    On the CPU ``torch.where`` takes 0.9-1.1 ms for 256 × 1024 elements (torch 2.13 and 2.14, float32 or
    bfloat16), 3-4× a multiply by the mask and 6-17× what follows (benchmarks/results/README.md,
    "Selecting by a mask").
    So a plain CPU tensor outside autograd is selected on its bits: ``keep`` (1 or 0) times v read as
    integers of its size, read back as floats. That is v's own bits where keep holds and all-zero
    bits, +0.0, elsewhere: exactly the selection, NaN and inf included, which a float multiply
    (NaN · 0 = NaN) is not. Bits have no derivative, so where autograd records (double backward),
    under ``torch.func`` transforms, ``torch.compile`` (which fuses the ``where`` itself) and on
    other devices, ``torch.where`` runs.
    """
    as_int = _bits_dtype(keep, v)
    if as_int is None:
        return torch.where(keep, v, 0) if layout_of == "keep" else v.clone().masked_fill_(torch.logical_not(keep), 0)
    # the product takes the layout of its first factor
    bits = keep * v.view(as_int) if layout_of == "keep" else v.view(as_int) * keep
    return bits.view(v.dtype)


def select(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where(cond, a, b)`` for a bool ``cond`` and tensors a, b of its shape and one dtype:
    the same bits, in ``cond``'s layout, computed as in ``where_else_zero`` where that applies:
    b's bits XOR (cond times the bits in which a and b differ), which is a's bits where cond holds
    and b's elsewhere. Three passes, each as cheap as a multiply; ``torch.where`` elsewhere."""
    as_int = _bits_dtype(cond, a, b)
    if as_int is None:
        return torch.where(cond, a, b)
    a_bits, b_bits = a.view(as_int), b.view(as_int)
    return (cond * (a_bits ^ b_bits)).bitwise_xor_(b_bits).view(a.dtype)


def _bits_dtype(cond: torch.Tensor, *values: torch.Tensor):
    """The integer dtype to select ``values`` on, or None where ``torch.where`` must run: another
    device or dtype, broadcasting, autograd recording, a ``torch.func`` transform, ``torch.compile``."""
    as_int = _SAME_SIZE_INT.get(values[0].dtype)
    if (as_int is None or torch.compiler.is_compiling() or not has_storage(cond)
            or any(v.dtype != values[0].dtype or v.device.type != "cpu" or v.shape != cond.shape
                   or (v.requires_grad and torch.is_grad_enabled()) or not has_storage(v) for v in values)):
        return None
    return as_int
