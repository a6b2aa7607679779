"""Hardtanh: a clamp.

    forward:   y = min(max(x, lo), hi)
    backward:  dy/dx = 1 if lo < x < hi else 0          so  grad_x = grad_y · [lo < x < hi]

At the corners x = lo and x = hi the derivative is 0, as in PyTorch.

What to save: backward needs only where lo < x < hi, and the output tells:
x ≤ lo gives y = lo, x ≥ hi gives y = hi, and in between y = x, so
lo < y < hi exactly where lo < x < hi (with lo = hi no element passes, from x
or from y). The output y is saved, the tensor the next layer keeps anyway (the
rule is explained in ``relu.py``). The gradient is written
``grad_y where lo < y < hi, else 0``, as ``hardtanh_backward`` computes it, so
a NaN (output NaN) gets gradient 0 (unlike ReLU, which passes it).

One drop-in detail follows the Function: in bfloat16 and float16 a bound may fall between two
values of the dtype, and then x is saved instead (``hardtanh_saves_output``).
"""
import math

import torch


def hardtanh_forward(x: torch.Tensor, min_val: float, max_val: float) -> torch.Tensor:
    return x.clamp(min_val, max_val)


def hardtanh_passes(s: torch.Tensor, min_val: float, max_val: float) -> torch.Tensor:
    """Where dy/dx = 1, from s = x or s = y (the same answer): lo < s < hi. A 16-bit s is compared
    in float32, as PyTorch compares it (see the end of the file)."""
    s = s.float() if s.dtype in _REDUCED else s
    return (s > min_val) & (s < max_val)


def hardtanh_derivative_times(v: torch.Tensor, s: torch.Tensor, min_val: float, max_val: float) -> torch.Tensor:
    """v · dy/dx, elementwise, from s = y (or x): v where lo < s < hi, 0 elsewhere (NaN included).
    The gradient keeps v's layout, as ``hardtanh_backward``'s does: v is copied (``clone`` keeps
    its strides) and zeroed where the derivative is 0."""
    return v.clone().masked_fill_(~hardtanh_passes(s, min_val, max_val), 0)


class Hardtanh(torch.autograd.Function):
    """y = hardtanh(x, lo, hi). x: any shape; y: same shape. Saves y (x if a bound is not a value of x's dtype)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, min_val, max_val):
        return hardtanh_forward(x, min_val, max_val)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.min_val, ctx.max_val = inputs
        s = output if hardtanh_saves_output(x.dtype, ctx.min_val, ctx.max_val) else x
        ctx.save_for_backward(s)
        ctx.save_for_forward(s)

    @staticmethod
    def backward(ctx, grad_y):
        (s,) = ctx.saved_tensors
        return hardtanh_derivative_times(grad_y, s, ctx.min_val, ctx.max_val), None, None

    @staticmethod
    def jvp(ctx, x_t, _lo_t, _hi_t):
        (s,) = ctx.saved_tensors
        return hardtanh_derivative_times(x_t, s, ctx.min_val, ctx.max_val)


class Hardtanh_(Hardtanh):
    """hardtanh_(x, lo, hi): y written into x, which is returned (``mark_dirty``, as in
    ``relu.py``'s ReLU_). Only where backward reads y (``hardtanh_saves_output``)."""

    @staticmethod
    def forward(x, min_val, max_val):
        return x.clamp_(min_val, max_val)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        Hardtanh.setup_context(ctx, inputs, output)


# --------------------------------------------------------------------------- drop-in detail: 16-bit bounds
# In bfloat16 or float16 a bound such as 0.7 lies between two values of the dtype. PyTorch compares
# x with it in float32 ("opmath"), so x = 0.69921875 is inside (gradient 1) while every x above 0.7
# is clamped to the same 0.69921875 (gradient 0): y cannot tell them apart. For such bounds x is
# saved instead, as the built-in always saves it.

# Significant bits, and the smallest and largest normal magnitudes, of the dtypes compared in float32.
_REDUCED = {torch.bfloat16: (8, 2.0**-126, 2.0**128), torch.float16: (11, 2.0**-14, 65504.0)}


def _representable(value: float, dtype: torch.dtype) -> bool:
    """Whether ``value`` is exactly a value of ``dtype`` (False when unsure: a subnormal, a NaN)."""
    if dtype not in _REDUCED or value == 0 or math.isinf(value):
        return True
    bits, smallest, largest = _REDUCED[dtype]
    mantissa, _ = math.frexp(value)
    return smallest <= abs(value) <= largest and (mantissa * 2**bits).is_integer()


def hardtanh_saves_output(dtype: torch.dtype, min_val: float, max_val: float) -> bool:
    """Whether y tells where lo < x < hi: yes unless a bound falls between two values of the dtype."""
    return _representable(min_val, dtype) and _representable(max_val, dtype)
