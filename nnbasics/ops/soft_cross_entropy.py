"""Softmax cross-entropy against probability ("soft") targets.

Shapes: logits x (N, C), target probabilities q (N, C) (MixUp, CutMix, distillation,
blended labels), class weights w (C,) or None (w ≡ 1). Write p = softmax(x) along C,
ε = label_smoothing, and q' for the target mixed with the uniform distribution:

    q'_ij = (1 - ε) q_ij + ε / C

    forward:   l_i = Σ_j w_j q'_ij · (-log p_ij)

It is the class-index loss of ``cross_entropy.py`` with the one-hot replaced by any
distribution; there the weighted, smoothed one-hot was the target, here it is w ⊙ q'.

Backward, with respect to the logits. Since d(-log p_k)/dx_j = p_j - [j = k],

    dl_i/dx_ij = Σ_k w_k q'_ik (p_ij - [j = k]) = m_i · p_ij - w_j q'_ij
    m_i = Σ_k w_k q'_ik                                    (the weighted target's total)

the issue's  p · Σ_c w_c q_c - w ⊙ q : without weights, and with q a distribution,
m_i = 1 and it is the familiar p - q'. Nothing here assumes q sums to 1, so m_i is kept.

Unlike class indices, the target is a tensor of real numbers and torch differentiates the
loss with respect to it (distillation backpropagates into the teacher), and, the loss being
linear in w, with respect to the weights too:

    dl_i/dq_ij = (1 - ε) w_j · (-log p_ij)          (q' depends on q through the factor 1 - ε)
    dl_i/dw_j  = q'_ij · (-log p_ij)

Reductions, exactly as PyTorch defines them for probability targets: 'sum' adds the rows,
'mean' divides that sum by N, the number of rows, *not* by the total weight as the
class-index loss does (so weights do not cancel out of the mean). There is no ignore_index:
every row has a target.

As in ``cross_entropy.py``, -log p_ij is computed as S_i - s_ij with s = x - max_c x and
S_i = log Σ_c e^(s_ic), a difference of a non-negative and a non-positive number, and every
formula is built from differentiable torch ops, so the backward has a backward of its own.
"""
import torch

from ._reduction import reduce, unreduce
from .softmax import shifted, softmax_forward


def _neg_log_p(x):
    """-log p_ij = S_i - s_ij for every row of logits x (N, C); never negative."""
    s = shifted(x, 1)
    return torch.log(torch.exp(s).sum(1, keepdim=True)) - s


def _smoothed(q, label_smoothing):
    """q' = (1 - ε) q + ε / C."""
    if not label_smoothing:
        return q
    return q * (1 - label_smoothing) + label_smoothing / q.shape[1]


def _weighted(v, weight):
    return v if weight is None else v * weight


def _per_row(x):
    """A stand-in of shape (N,) for the unreduced loss, which ``unreduce`` reads only for its
    shape and size: an expanded scalar, so nothing is allocated."""
    return x.new_empty(()).expand(x.shape[0])


def soft_cross_entropy_unreduced(x, q, weight, label_smoothing):
    """l_i for every row: the unreduced loss. x, q: (N, C); returns (N,)."""
    return (_weighted(_smoothed(q, label_smoothing), weight) * _neg_log_p(x)).sum(1)


def soft_cross_entropy_partials(x, q, weight, label_smoothing, needs=(True, True, True)):
    """(dl_i/dx_ij, dl_i/dq_ij, dl_i/dw_j per row): (N, C) each, or None where ``needs`` says no."""
    q_s = _smoothed(q, label_smoothing)
    dx = dq = dw = None
    if needs[0]:
        wq = _weighted(q_s, weight)
        dx = wq.sum(1, keepdim=True) * softmax_forward(x, 1) - wq
    if needs[1] or needs[2]:
        nlp = _neg_log_p(x)
        if needs[1]:
            dq = _weighted(nlp, weight) * (1 - label_smoothing)
        if needs[2]:
            dw = q_s * nlp
    return dx, dq, dw


def soft_cross_entropy_forward(x, q, weight, reduction, label_smoothing):
    return reduce(soft_cross_entropy_unreduced(x, q, weight, label_smoothing), reduction)


def soft_cross_entropy_backward(grad_loss, x, q, weight, reduction, label_smoothing, needs_input_grad):
    """(dL/dx, dL/dq, dL/dw): the partials scaled by dL/dl_i, row by row; dL/dw sums over rows."""
    r = unreduce(grad_loss, reduction, _per_row(x))[:, None]
    dx, dq, dw = soft_cross_entropy_partials(x, q, weight, label_smoothing, needs_input_grad)
    return (None if dx is None else r * dx, None if dq is None else r * dq,
            None if dw is None else (r * dw).sum(0))


def soft_cross_entropy_jvp(tangents, x, q, weight, reduction, label_smoothing):
    """dL = reduce(Σ_j (dl_i/dx_ij dx_ij + dl_i/dq_ij dq_ij) + Σ_j dl_i/dw_j dw_j)."""
    needs = tuple(t is not None for t in tangents)
    partials = soft_cross_entropy_partials(x, q, weight, label_smoothing, needs)
    dl = sum((p * t).sum(1) for p, t in zip(partials, tangents) if t is not None)
    if isinstance(dl, int):  # no input had a tangent
        dl = x.new_zeros(x.shape[0])
    return reduce(dl, reduction)


class SoftCrossEntropy(torch.autograd.Function):
    """loss = cross_entropy(x, q) with probability targets. x, q: (N, C) float; weight: (C,)
    or None; loss: (N,) for reduction='none', else a scalar."""

    generate_vmap_rule = True
    autocast = "float32"  # under torch.autocast: computed in float32, as the built-in loss

    @staticmethod
    def forward(x, q, weight, reduction, label_smoothing):
        return soft_cross_entropy_forward(x, q, weight, reduction, label_smoothing)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, q, weight, *ctx.options = inputs  # options: reduction, label_smoothing
        ctx.save_for_backward(x, q, weight)
        ctx.save_for_forward(x, q, weight)

    @staticmethod
    def backward(ctx, grad_loss):
        grads = soft_cross_entropy_backward(grad_loss, *ctx.saved_tensors, *ctx.options, ctx.needs_input_grad[:3])
        return *grads, None, None

    @staticmethod
    def jvp(ctx, x_t, q_t, weight_t, _reduction_t, _smoothing_t):
        return soft_cross_entropy_jvp((x_t, q_t, weight_t), *ctx.saved_tensors, *ctx.options)
