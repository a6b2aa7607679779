"""Dropout on the fast path: a cheaper draw, and the dropout formulas on the CPU without slow loops.

**The draw.** The textbook draws one float32 uniform number per element (``ops/dropout.py``);
torch draws with ``bernoulli_``. Here 16 random bits per element are compared with a threshold: an
element is kept with probability 1 - p', where p' is p rounded to a multiple of 2⁻¹⁶
(``drawn_p``; |p' - p| <= 2⁻¹⁷, and p' = p for p = 0, 1/2, 1/4, ...). The scale is 1 / (1 - p'),
so E[y] = x holds exactly. The bits come from 64-bit random integers (``torch.randint`` over all
but one of the 2⁶⁴ values: a bias below 2⁻⁶³), four elements per number: several times cheaper
than ``bernoulli_`` or ``torch.rand``, which are most of what dropout costs in a training step.
``python -m benchmarks.dropout_draw_timing`` measures the draws side by side.

**The formulas.** ``kernel(..., cpu=False)`` keeps the dropout formulas eager on the CPU
(Inductor's C++ handles bool masks slowly, torch 2.13), so their eager form here avoids PyTorch's
slow CPU loops: a bool mask is multiplied as uint8 (``masks.as_factor``), ReLU's mask is
``y.bool()``, leaky_relu is ATen's ``leaky_relu`` and ``leaky_relu_backward`` (one kernel each, as
in ``__init__.py``), and the draw's comparison is a clamp.
The math is the textbook's (``ops/dropout.py``, ``ops/activation_dropout.py``).
"""
import torch

from ..ops import activation_dropout as _act_dropout
from ..ops import hardtanh as _hardtanh
from . import masks

_LEVELS = 1 << 16  # the draw's resolution: 16 bits per element


def drawn_p(p: float) -> float:
    """The drop probability the draw really uses: p rounded to a multiple of 2⁻¹⁶, and below
    1 unless p is 1 (so that some element is kept and E[y] = x holds)."""
    if p >= 1:
        return 1.0
    return min(round(p * _LEVELS), _LEVELS - 1) / _LEVELS


def draw_keep(x: torch.Tensor, p: float) -> torch.Tensor:
    """A bool tensor shaped like x (contiguous): True with probability 1 - drawn_p(p)."""
    if p >= 1:
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    half, n = _LEVELS // 2, x.numel()
    # 64 random bits fill four 16-bit integers; randint is traced by torch.compile (random_ is not).
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    r = bits.view(torch.int16)[:n].view(x.shape)  # uniform integers in [-2¹⁵, 2¹⁵)
    # P(r >= t) = 1 - drawn_p(p), for t = drawn_p(p) · 2¹⁶ - 2¹⁵
    t = round(drawn_p(p) * _LEVELS) - half
    if t == -half:  # p' = 0: every element is kept
        return r >= t
    # r >= t, computed as clamp(r, t - 1, t) - (t - 1), which is 0 or 1: the same mask, 3× faster than
    # the comparison, which writes its bool result through a slow path on the CPU
    return r.clamp(t - 1, t).sub_(t - 1).bool()


def dropout_derivative_times(v: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """``ops.dropout.dropout_derivative_times``: the mask multiplied as uint8, scaled in place."""
    scale = 0.0 if p == 1 else 1 / (1 - p)
    return (v * masks.as_factor(keep)).mul_(scale)


def activation_dropout_forward(x, activation, p, params, keep):
    """``ops.activation_dropout.activation_dropout_forward`` with this file's formulas."""
    _act_dropout.check(activation, params)
    if activation == "relu":
        y = x.clamp_min(0)
        return dropout_derivative_times(y, keep, p), keep & y.bool()
    if activation == "hardtanh":
        y = _hardtanh.hardtanh_forward(x, *params)
        return dropout_derivative_times(y, keep, p), keep & _hardtanh.hardtanh_passes(x, *params)
    return dropout_derivative_times(torch.ops.aten.leaky_relu(x, *params), keep, p), keep


def activation_dropout_derivative_times(v, mask, activation, p, params, z=None):
    """``ops.activation_dropout.activation_dropout_derivative_times`` with this file's formulas."""
    v = dropout_derivative_times(v, mask, p)
    return torch.ops.aten.leaky_relu_backward(v, z, *params, False) if activation == "leaky_relu" else v
