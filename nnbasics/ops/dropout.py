"""Dropout (inverted dropout, as in PyTorch).

    forward:   y = x · m / (1 - p)        m ~ Bernoulli(1 - p), drawn once per element
    backward:  dy/dx = m / (1 - p)        so  grad_x = grad_y · m / (1 - p)

Dividing by the keep probability during training keeps E[y] = x, so nothing
changes at evaluation time, where dropout is the identity. The mask is saved as
bool (1 byte per element) and returned as a second, non-differentiable output.

The draw (``draw_keep``) compares 16 random bits per element with a threshold: an
element is kept with probability 1 - p', where p' is p rounded to a multiple of
2⁻¹⁶ (``drawn_p``; |p' - p| <= 2⁻¹⁷, and p' = p for p = 0, 1/2, 1/4, ...). The scale
is 1 / (1 - p'), so E[y] = x holds exactly. The bits come from 64-bit random
integers (``torch.randint`` over all but one of the 2⁶⁴ values: a bias below 2⁻⁶³), four
elements per number: several times cheaper than ``bernoulli_``, the
draw of ``torch.nn.functional.dropout``, which is most of what dropout costs
(docs/training.md). The masks are therefore not the ones torch draws from the same seed.
"""
import torch

from ._masks import as_factor, save_mask

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
    # the comparison, which writes its bool result through a slow path on the CPU (benchmarks/results/README.md)
    return r.clamp(t - 1, t).sub_(t - 1).bool()


def dropout_forward(x: torch.Tensor, p: float):
    keep = draw_keep(x, p)
    return dropout_derivative_times(x, keep, drawn_p(p)), keep


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
        ctx.p = drawn_p(inputs[1])
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
