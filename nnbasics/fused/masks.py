"""The CPU tricks of the fast path: multiplying and selecting by a bool mask without PyTorch's
slow CPU loops, and the CPU twins of the textbook's formulas that use them.

PyTorch's CPU ``torch.where`` and float × bool multiply run scalar-ish loops (torch 2.13): for
the formulas that run eagerly (the compiled kernels' small-tensor and double-backward cases, and
the dropout formulas, which ``kernel(..., cpu=False)`` keeps eager on the CPU) these functions
give the very same bits faster, by reading a bool mask as uint8 and selecting on a float's bits as
integers. Each guards itself: where autograd records, under ``torch.func`` transforms, under
``torch.compile`` and on other devices they are the plain ``torch.where``.
``python -m benchmarks.mask_timing`` measures each against the plain op.
"""
import torch

from ..ops import hardtanh as _hardtanh
from ._torch_private import has_storage


def as_factor(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask as a factor to multiply by: a bool mask's bytes viewed as uint8 (no copy, same
    values), anything else as it is. Multiplying by it gives the same numbers as by the bool mask,
    but PyTorch's CPU multiply has a vectorized loop for float × uint8 and not for float × bool:
    3× faster on a (128, 1024) float32 tensor (28 µs vs 87 µs; ``python -m benchmarks.mask_timing``)."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


_SAME_SIZE_INT = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16,
                  torch.float16: torch.int16}


def where_else_zero(keep: torch.Tensor, v: torch.Tensor, *, layout_of: str = "keep") -> torch.Tensor:
    """``torch.where(keep, v, 0)``: v where the bool ``keep`` is True, +0 elsewhere (where v is NaN or
    infinite too), the same bits, in the layout of ``keep`` as ``torch.where`` gives it, or of v
    (``layout_of="v"``, as ``v.clone().masked_fill_(~keep, 0)`` gives it).

    On the CPU ``torch.where`` takes 0.9-1.1 ms for 256 × 1024 elements (torch 2.13 and 2.14, float32 or
    bfloat16), 3-4× a multiply by the mask (``benchmarks/results/README.md``, "Selecting by a mask";
    ``python -m benchmarks.mask_timing`` measures it).
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


def _bits_dtype(cond: torch.Tensor, *values: torch.Tensor):
    """The integer dtype to select ``values`` on, or None where ``torch.where`` must run: another
    device or dtype, broadcasting, autograd recording, a ``torch.func`` transform, ``torch.compile``."""
    as_int = _SAME_SIZE_INT.get(values[0].dtype)
    if (as_int is None or torch.compiler.is_compiling() or not has_storage(cond)
            or any(v.dtype != values[0].dtype or v.device.type != "cpu" or v.shape != cond.shape
                   or (v.requires_grad and torch.is_grad_enabled()) or not has_storage(v) for v in values)):
        return None
    return as_int


# --------------------------------------------------------------------------- the textbook's formulas, on the bits

def hardtanh_derivative_times(v, s, min_val, max_val):
    """``ops.hardtanh.hardtanh_derivative_times``, in v's layout."""
    return where_else_zero(_hardtanh.hardtanh_passes(s, min_val, max_val), v, layout_of="v")


