"""Cross-entropy that computes its gradient during forward, into the logits' own memory.

    loss = nnbasics.fused.inplace.cross_entropy_(model(x), y)      # model(x) is overwritten

The trick of Liger-Kernel: dl/dx does not depend on the upstream gradient except through one
scale per row, so it can be computed while the logits are in cache, and stored *over the
logits*, which nothing needs any more. Backward then only scales it in place. Peak memory
drops from logits + log-probabilities + gradient (three (N, C) tensors) to the logits alone.
The formulas are the textbook's (``nnbasics/ops/cross_entropy.py``: ``cross_entropy_unreduced`` and
``cross_entropy_partials``), compiled by ``kernels.kernel``; ``python -m benchmarks.memory`` measures the peak.
"""
import torch

from .. import _arguments as arguments
from ..ops import cross_entropy as _ce
from ..ops.softmax import shifted
from . import CrossEntropy
from .kernels import kernel

CHUNK_BYTES = 64 * 2**20  # rows are processed in chunks of about this size, bounding temporaries


def _unreduced_and_partials_(x, target, weight, ignore_index, label_smoothing):
    """The loss of every row, and x overwritten by dl/dx = m·p - q (the textbook's formulas)."""
    valid, t = _ce.valid_targets(target, ignore_index)
    s = shifted(x, 1)
    log_sum = torch.log(torch.exp(s).sum(1))
    loss = _ce.cross_entropy_unreduced(s, log_sum, valid, t, weight, label_smoothing)
    x.copy_(_ce.cross_entropy_partials(torch.exp(s - log_sum[:, None]), valid, t, weight, label_smoothing))  # p = e^(s - S)
    return loss


def _total_weight(target, weight, ignore_index, dtype):
    """The divisor of 'mean': Σ_i w_{t_i} over the rows that are not ignored (their count, as a float)."""
    return _ce.divisor(*_ce.valid_targets(target, ignore_index), weight, dtype).to(dtype)


_unreduced_and_partials_kernel = kernel(_unreduced_and_partials_)


class CrossEntropyInPlace(torch.autograd.Function):
    """Softmax cross-entropy whose forward stores dl/dx over the logits (see the module docstring).

    Caveats (all enforced or detected):
    - the logits' values are gone after the call (their version counter is bumped, so autograd
      raises if anything had saved them for its own backward);
    - backward can run only once (a second call would scale the gradient twice);
    - no double backward (the gradient is data, not a graph);
    - the input must be a contiguous (N, C) non-leaf tensor that requires grad.
    """

    @staticmethod
    def forward(x, target, weight, ignore_index, reduction, label_smoothing):
        rows_per_chunk = max(1, CHUNK_BYTES // max(1, x.shape[1] * x.element_size()))
        loss = torch.cat([
            _unreduced_and_partials_kernel(xc, tc, weight, ignore_index, label_smoothing)
            for xc, tc in zip(x.split(rows_per_chunk), target.split(rows_per_chunk))
        ]) if x.shape[0] else x.new_zeros(0)
        total = _total_weight(target, weight, ignore_index, x.dtype)
        return _ce.reduce(loss, reduction, total), x

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, target, weight, ctx.ignore_index, ctx.reduction, _ = inputs
        _, grad = output
        ctx.mark_dirty(x)
        ctx.mark_non_differentiable(grad)
        ctx.set_materialize_grads(False)  # else backward starts by allocating zeros the size of the logits
        ctx.save_for_backward(grad, target, weight)
        ctx.used = False

    @staticmethod
    def backward(ctx, grad_loss, _grad_of_grad):
        if grad_loss is None:
            return None, None, None, None, None, None
        if ctx.used:
            raise RuntimeError("cross_entropy_: the gradient was stored over the logits and has been used; "
                               "backward can run only once (no retain_graph) for this loss")
        ctx.used = True
        grad, target, weight = ctx.saved_tensors
        total = _total_weight(target, weight, ctx.ignore_index, grad.dtype)
        scale = _ce.unreduce(grad_loss, ctx.reduction, grad[:, 0], total)
        # ignored rows keep their gradient 0 even when the scale is 1/0 (every row ignored), as in torch
        scale = torch.where(target != ctx.ignore_index, scale, 0)
        return grad.mul_(scale[:, None]), None, None, None, None, None


def cross_entropy_(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """``cross_entropy`` that overwrites ``input`` (N, C) with its own gradient (see CrossEntropyInPlace).

    Use it where the logits are not needed after the loss, e.g. ``loss = cross_entropy_(model(x), y)``.
    Without autograd (no_grad, or input not requiring grad) it computes the loss and leaves input intact.
    """
    reduction = arguments.reduction(None, None, reduction)
    arguments.class_targets(input, target, ignore_index)
    arguments.cross_entropy_options(input.shape[-1], weight, label_smoothing)
    if not (torch.is_grad_enabled() and input.requires_grad):
        return CrossEntropy.apply(input, target.long(), weight, int(ignore_index), reduction, float(label_smoothing))
    if input.dim() != 2 or not input.is_contiguous():
        raise RuntimeError(f"cross_entropy_: input must be a contiguous (N, C) tensor to be overwritten, got shape "
                           f"{tuple(input.shape)} (contiguous={input.is_contiguous()}); use cross_entropy instead")
    if input.is_leaf:
        raise RuntimeError("cross_entropy_: input is a leaf tensor that requires grad, whose values autograd must keep; "
                           "cross_entropy_ is for logits computed by a model: use cross_entropy for leaves")
    loss, _ = CrossEntropyInPlace.apply(input, target.long(), weight, int(ignore_index), reduction, float(label_smoothing))
    return loss
