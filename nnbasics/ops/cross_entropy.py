"""Softmax cross-entropy as one op: one forward, one hand-written backward.

Shapes: logits x (N, C), class indices t (N,), class weights w (C,) or None.
Write p = softmax(x) along C, ε = label_smoothing, and q_i for the target of row i,
the one-hot of t_i smoothed and weighted:

    q_ij = (1 - ε) w_{t_i} [j = t_i] + (ε / C) w_j          (w ≡ 1 without weights)

    forward:   l_i = Σ_j q_ij · (-log p_ij)
                   = (1 - ε) · w_{t_i} · (-log p_{i,t_i})  +  (ε / C) · Σ_c w_c · (-log p_{i,c})

(rows with t_i = ignore_index give l_i = 0). Since d(-log p_k)/dx_j = p_j - [j = k],
the derivative of every row is

    backward:  dl_i/dx_ij = Σ_k q_ik (p_ij - [j = k]) = m_i · p_ij - q_ij
               m_i = Σ_j q_ij = (1 - ε) w_{t_i} + (ε / C) Σ_c w_c       (the target's total)

i.e. the softmax minus the target, weighted; without weights m_i = 1 and the
rule is the famous  dl/dx = p - q.  Reductions: 'sum' adds the rows, 'mean'
divides the sum by the total weight of the rows that are not ignored,
Σ_i w_{t_i} (by N when unweighted), exactly as PyTorch does.

A batch in which every row is ignored has 'mean' L = 0 / 0 = NaN, as in PyTorch, but its
gradient is 0, also as in PyTorch: an ignored row is not in the loss at all, so dL/dx_i is
zero by definition, not (dL/dl_i)(dl_i/dx_i) = (1/0) · 0. The backward therefore selects
(torch.where) rather than multiplies by the row's validity: one all-padding batch of a
sequence model must not turn every weight into NaN.

This is one formula, not log_softmax and nll_loss chained: no (N, C) gradient
of log p is ever formed. Backward recomputes p from the saved logits rather
than keeping a second (N, C) tensor; being built from differentiable torch
ops, it can itself be differentiated (double backward).
"""
import torch

from ._reduction import reduce, unreduce
from .softmax import shifted, softmax_forward


def cross_entropy_forward(x, target, weight, ignore_index, reduction, label_smoothing):
    valid, t = valid_targets(target, ignore_index)
    s = shifted(x, 1)  # x - max_c x: the same p, every exponent ≤ 0
    log_sum = torch.log(torch.exp(s).sum(1))  # S_i = log Σ_c e^(s_ic), so -log p_ic = S_i - s_ic
    loss = cross_entropy_unreduced(s, log_sum, valid, t, weight, label_smoothing)
    return reduce(loss, reduction, mean_divisor(reduction, valid, t, weight, x.dtype))


def cross_entropy_backward(grad_loss, p, target, weight, ignore_index, reduction, label_smoothing):
    """dL/dx_ij = (dL/dl_i) · (m_i p_ij - q_ij), the per-row factor folded into the formula.
    p: the softmax of the logits (N, C); returns (N, C)."""
    valid, t = valid_targets(target, ignore_index)
    total = mean_divisor(reduction, valid, t, weight, p.dtype)
    grad_rows = unreduce(grad_loss, reduction, target, total)
    return cross_entropy_partials(p, valid, t, weight, label_smoothing, grad_rows)


def cross_entropy_jvp(x_t, x, target, weight, ignore_index, reduction, label_smoothing):
    """dL = reduce(Σ_j dl_i/dx_ij · dx_ij): the same derivative, contracted with the tangent."""
    valid, t = valid_targets(target, ignore_index)
    grad = cross_entropy_partials(softmax_forward(x, 1), valid, t, weight, label_smoothing)
    return reduce((grad * x_t).sum(1), reduction, mean_divisor(reduction, valid, t, weight, x.dtype))


class CrossEntropy(torch.autograd.Function):
    """loss = cross_entropy(x, t). x: (N, C) float; target: (N,) int64;
    weight: (C,) or None; loss: (N,) for reduction='none', else a scalar."""

    generate_vmap_rule = True
    autocast = "float32"  # under torch.autocast: computed in float32, as the built-in loss

    @staticmethod
    def forward(x, target, weight, ignore_index, reduction, label_smoothing):
        return cross_entropy_forward(x, target, weight, ignore_index, reduction, label_smoothing)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, target, weight, *ctx.options = inputs  # options: ignore_index, reduction, label_smoothing
        ctx.save_for_backward(x, target, weight)
        ctx.save_for_forward(x, target, weight)

    @staticmethod
    def backward(ctx, grad_loss):
        x, target, weight = ctx.saved_tensors
        p = softmax_forward(x, 1)  # recomputed from the saved logits
        grad_x = cross_entropy_backward(grad_loss, p, target, weight, *ctx.options)
        return grad_x, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        return cross_entropy_jvp(x_t, *ctx.saved_tensors, *ctx.options)


# --------------------------------------------------------------------------- the two formulas: l_i and dl_i/dx_ij

def cross_entropy_unreduced(s, log_sum, valid, t, weight, eps):
    """l_i for every row, from the shifted logits s = x - max_c x (N, C; every exponent ≤ 0, as in
    softmax.py), S_i = log Σ_c e^(s_ic) (``log_sum``, (N,)), the rows' validity and class indices.
    Returns (N,). As -log p_ic = S_i - s_ic, no (N, C) tensor of log-probabilities is ever written:

        l_i = Σ_c q_ic (S_i - s_ic) = m_i S_i - (1 - ε) w_{t_i} s_{i,t_i} - (ε / C) Σ_c w_c s_ic

    and every term is non-negative (S_i ≥ 0 ≥ s_ic): no cancellation. Without weights m_i = 1.
    """
    n_classes = s.shape[1]
    if not n_classes:  # no classes (torch allows it when every row is ignored): l_i = 0
        return s.new_zeros(s.shape[0])
    s_t = s.gather(1, t[:, None]).squeeze(1)  # s_{i, t_i}
    if weight is None:  # m_i = 1: l_i = S_i - (1 - ε) s_{i,t_i} - (ε / C) Σ_c s_ic
        loss = torch.add(log_sum, s_t, alpha=-(1 - eps))
        if eps:  # skipped at ε = 0, where a -inf logit would give 0·inf = NaN
            loss = torch.add(loss, s.sum(1), alpha=-eps / n_classes)
    else:
        loss = (1 - eps) * weight[t].to(s.dtype) * (log_sum - s_t)
        if eps:
            loss = loss + eps / n_classes * (weight.sum() * log_sum - s @ weight)
    return torch.where(valid, loss, 0)


def cross_entropy_partials(p, valid, t, weight, eps, row_scale=None):
    """dl_i/dx_ij = m_i p_ij - q_ij for every row, times ``row_scale`` (N,) if given, zero on
    ignored rows. p: the softmax of the logits, (N, C); returns (N, C).

    q is never built as an (N, C) one-hot: its smoothing part (ε/C) w_j is one broadcast row, and
    its target part (1 - ε) w_{t_i} is subtracted at (i, t_i) alone, by a scatter of N numbers.
    """
    if not p.shape[1]:  # no classes, every row ignored: nothing to differentiate
        return p.new_zeros(p.shape)
    grad, target_part = cross_entropy_partials_in_two(p, valid, t, weight, eps, row_scale)
    # In place on a tensor just made, and that no backward reads.
    return grad.scatter_add_(1, t[:, None], target_part[:, None])


def cross_entropy_partials_in_two(p, valid, t, weight, eps, row_scale=None):
    """``cross_entropy_partials`` before its scatter: the (N, C) part, m_i p_ij minus q's smoothing
    part, and the (N,) target part, -(1 - ε) w_{t_i}, both scaled, to be added at (i, t_i)."""
    n_classes = p.shape[1]
    # 0 on ignored rows: selected, not multiplied, so a NaN scale (all rows ignored: 1/0) stays out
    r = valid.to(p.dtype) if row_scale is None else torch.where(valid, row_scale, 0)
    if weight is None:  # m_i = 1, and q_ij = (1 - ε) [j = t_i] + ε / C
        grad = (p - eps / n_classes) * r[:, None] if eps else p * r[:, None]
        target_part = -(1 - eps) * r
    else:
        w_t = weight[t].to(p.dtype)
        m = r * ((1 - eps) * w_t + eps / n_classes * weight.sum())
        grad = m[:, None] * p
        if eps:
            grad = torch.addcmul(grad, r[:, None], weight, value=-eps / n_classes)
        target_part = -(1 - eps) * w_t * r
    return grad, target_part


# --------------------------------------------------------------------------- drop-in options: ignore_index and the divisor of 'mean'

def valid_targets(target, ignore_index):
    """(valid rows, a safe class index per row: any class will do for an ignored row, which is masked out)."""
    valid = target != ignore_index
    return valid, torch.where(valid, target, 0)


def divisor(valid, t, weight, dtype):
    """Σ_i w_{t_i} over the rows that are not ignored (their count when unweighted): 'mean' divides by it."""
    if weight is None or not weight.numel():  # (no classes: nothing valid, a count of 0)
        return valid.sum()  # an integer count: dividing a float loss by it keeps the loss's dtype
    return torch.where(valid, weight[t], 0).sum().to(dtype)


def mean_divisor(reduction, valid, t, weight, dtype):
    """What ``reduce`` divides by: the divisor for 'mean', nothing for the other reductions."""
    return divisor(valid, t, weight, dtype) if reduction == "mean" else None
