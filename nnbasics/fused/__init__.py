"""The fast path (``impl="fused"``): the textbook's derivatives in one pass each, and every speed trick.

The reference Functions in ``nnbasics.ops`` spell each formula out as a few tensor operations,
and each operation is a separate pass over memory: the sigmoid's backward ``grad · y · (1 - y)``
reads and writes three times what PyTorch's single ``sigmoid_backward`` kernel does. Here the
activations call that kind of kernel itself, and every other formula is handed to
``torch.compile`` (``kernels.py``), which fuses it into one loop that reads each input once and
writes each output once.

Nothing is re-derived: each class below subclasses its textbook twin, keeps its ``jvp`` and its
``setup_context`` (what is saved; leaky_relu saves its input instead of its output, and compiled
cross-entropy adds each row's log-sum-exp, both below), and replaces the body of ``forward`` and
``backward``: with
PyTorch's own kernel for the same derivative where there is one (the activations: see below), else
with the compiled version of the textbook's own formula functions. The other tricks, each with its
reason and the command that measures it in its module's docstring:

- ``cloop.py``: hardtanh's derivative as a loop in C, one rule at NaN and as fast as ATen's kernel;
- ``masks.py``: multiplying and selecting by a bool mask on the CPU without PyTorch's slow loops;
- ``dropout.py``: a dropout draw of 16 random bits per element, and the dropout formulas on the CPU;
- ``inplace.py``: ``cross_entropy_``, which stores the gradient over the logits during forward;
- ``_torch_private.py``: ``FastApply``, ``Function.apply`` without its argument binding.

``Linear`` is the textbook's: its work is three matrix products, already single BLAS calls, with
nothing between them to fuse (only ``FastApply`` is added). ``python -m benchmarks.ops --impl
fused`` and ``python -m benchmarks.train`` measure the fast path against the built-ins.
"""
import torch

from .. import ops
from ..ops import binary_cross_entropy as _bce
from ..ops import cross_entropy as _ce
from ..ops import hardtanh as _hardtanh
from ..ops import mse_loss as _mse
from ..ops import soft_cross_entropy as _soft_ce
from ..ops.softmax import shifted, softmax_forward
from . import cloop, masks
from . import dropout as _dropout
from ._torch_private import FastApply
from .kernels import kernel

# --------------------------------------------------------------------------- activations
# Where PyTorch has the op's derivative as one kernel of its own (``sigmoid_backward``,
# ``threshold_backward``, ...: the kernels the built-in ops' autograd calls), the fast path calls it
# on the tensor the textbook saves (leaky_relu: x, below): one vectorized pass, which a compiled
# loop of the same formula does not beat (``python -m benchmarks.derivative_kernels``;
# docs/fused.md). The forward likewise is the built-in's one op. ``torch.ops.aten`` is PyTorch's public namespace of its ops.
_aten = torch.ops.aten
_hardtanh_derivative_times = kernel(_hardtanh.hardtanh_derivative_times, eager=masks.hardtanh_derivative_times)
_dropout_derivative_times = kernel(_dropout.dropout_derivative_times, cpu=False)
_activation_dropout_forward = kernel(_dropout.activation_dropout_forward, cpu=False)
_activation_dropout_derivative_times = kernel(_dropout.activation_dropout_derivative_times, cpu=False)


class Sigmoid(FastApply, ops.Sigmoid):
    @staticmethod
    def forward(x):
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_y):
        return _aten.sigmoid_backward(grad_y, *ctx.saved_tensors)


class Tanh(FastApply, ops.Tanh):
    # forward: the textbook's, one ATen op (torch.tanh).

    @staticmethod
    def backward(ctx, grad_y):
        return _aten.tanh_backward(grad_y, *ctx.saved_tensors)


class ReLU(FastApply, ops.ReLU):
    # forward: the textbook's, one ATen op (clamp_min).

    @staticmethod
    def backward(ctx, grad_y):
        return _aten.threshold_backward(grad_y, *ctx.saved_tensors, 0)


class ReLU_(FastApply, ops.ReLU_):
    backward = staticmethod(ReLU.backward)


# leaky_relu saves its input x here, as the built-in does, where the textbook saves the output y
# (which the next layer keeps anyway). The derivative is the same from either, but alone, forward
# and backward at 4M elements ran 1.06-1.17x the built-in saving y and 1.00-1.05x saving x; in an
# MLP's training step the two took the same time (``python -m benchmarks.saved_output``). The
# in-place variant keeps the textbook's y, as x is overwritten. Hardtanh keeps y: saving x did not
# change its time (its excess is its compiled backward, below).
class LeakyReLU(FastApply, ops.LeakyReLU):
    @staticmethod
    def forward(x, negative_slope):
        return _aten.leaky_relu(x, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.negative_slope = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx, grad_y):
        # grad_y where s > 0, slope · grad_y elsewhere, for s = y or x alike (the textbook's rule)
        return _aten.leaky_relu_backward(grad_y, *ctx.saved_tensors, ctx.negative_slope, False), None


class LeakyReLU_(FastApply, ops.LeakyReLU_):
    backward = staticmethod(LeakyReLU.backward)


class Hardtanh(FastApply, ops.Hardtanh):
    # forward: the textbook's, one ATen op (clamp). Backward: not ATen's ``hardtanh_backward``,
    # which is not one rule at a NaN input (0 in its vectorized loop, grad_y in its scalar tail:
    # tests/test_opinfo.py, NAN_GRAD_RULE), but the textbook's formula as a C loop (``cloop.py``),
    # else compiled: a NaN gets 0 everywhere.

    @staticmethod
    def backward(ctx, grad_y):
        (s,) = ctx.saved_tensors
        derivative_times = cloop.hardtanh_derivative_times if cloop.serves(grad_y, s) else _hardtanh_derivative_times
        return derivative_times(grad_y, s, ctx.min_val, ctx.max_val), None, None


class Hardtanh_(FastApply, ops.Hardtanh_):
    backward = staticmethod(Hardtanh.backward)


def _with_drawn_p(textbook):
    """``textbook.setup_context``, then ``ctx.p`` set to the drop probability the draw of
    ``dropout.py`` uses (``drawn_p``): backward scales by it."""
    def setup_context(ctx, inputs, output):
        textbook.setup_context(ctx, inputs, output)
        ctx.p = _dropout.drawn_p(ctx.p)
    return staticmethod(setup_context)


class Dropout(FastApply, ops.Dropout):
    """The draw of ``dropout.py`` (16 bits per element; random numbers are not compiled)."""

    setup_context = _with_drawn_p(ops.Dropout)

    @staticmethod
    def forward(x, p):
        mask = _dropout.draw_keep(x, p)
        return _dropout_derivative_times(x, mask, _dropout.drawn_p(p)), mask

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None
        return _dropout_derivative_times(grad_y, *ctx.saved_tensors, ctx.p), None


class Dropout_(FastApply, ops.Dropout_):
    backward = staticmethod(Dropout.backward)

    @staticmethod
    def forward(x, p):
        y, mask = Dropout.forward(x, p)
        return x.copy_(y), mask

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        Dropout.setup_context(ctx, inputs, output)


class ActivationDropout(FastApply, ops.ActivationDropout):
    """The draw of ``dropout.py``; the rest writes a bool mask, so it runs eagerly on the CPU."""

    setup_context = _with_drawn_p(ops.ActivationDropout)

    @staticmethod
    def forward(x, activation, p, params):
        return _activation_dropout_forward(x, activation, _dropout.drawn_p(p), params, _dropout.draw_keep(x, p))

    @staticmethod
    def backward(ctx, grad_z, _grad_mask):
        if grad_z is None:  # z got no gradient (grads are not materialized)
            return None, None, None, None
        mask, *z = ctx.saved_tensors
        grad_x = _activation_dropout_derivative_times(grad_z, mask, ctx.activation, ctx.p, ctx.params, *z)
        return grad_x, None, None, None


class Softmax(FastApply, ops.Softmax):
    @staticmethod
    def forward(x, dim):
        return torch.softmax(x, dim)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return _aten._softmax_backward_data(grad_y, y, ctx.dim, y.dtype), None


class LogSoftmax(FastApply, ops.LogSoftmax):
    @staticmethod
    def forward(x, dim):
        return torch.log_softmax(x, dim)

    @staticmethod
    def backward(ctx, grad_z):
        (z,) = ctx.saved_tensors
        return _aten._log_softmax_backward_data(grad_z, z, ctx.dim, z.dtype), None


class Linear(FastApply, ops.Linear):
    pass


# --------------------------------------------------------------------------- losses

MIN_CLASSES = 32
"""Cross-entropy over fewer classes runs its formulas eagerly. With 10 classes the compiled
forward saves about 20% of a call that takes microseconds (2500 x 10: 122 -> 96 us; 10000 x 10:
399 -> 300 us), against a compile of about 3 s, repaid after some 10^5 calls: far more than an
MNIST run's evaluation makes. From 1000 classes on it saves over half (2048 x 1000: 2.98 -> 1.26
ms). Measured on a 2-core AMD EPYC, torch 2.13.0+cpu, 2 threads, eager against
``torch.compile`` of ``ops.cross_entropy.cross_entropy_forward``, alternating with
``torch.utils.benchmark``."""


def _many_classes(x, *args) -> bool:
    return x.dim() > 0 and x.shape[1 if x.dim() > 1 else 0] >= MIN_CLASSES


def cross_entropy_forward_and_lse(x, target, weight, ignore_index, reduction, label_smoothing):
    """The textbook's loss, and each row's log-sum-exp lse_i = log Σ_c e^(x_ic) = max_c x_ic + S_i."""
    valid, t = _ce.valid_targets(target, ignore_index)
    s = shifted(x, 1)
    log_sum = torch.log(torch.exp(s).sum(1))
    loss = _ce.cross_entropy_unreduced(s, log_sum, valid, t, weight, label_smoothing)
    return _ce.reduce(loss, reduction, _ce.mean_divisor(reduction, valid, t, weight, x.dtype)), x.amax(1) + log_sum


def cross_entropy_backward_from_lse(grad_loss, x, lse, target, weight, ignore_index, reduction, label_smoothing):
    """The textbook's backward, with p = e^(x - lse): one exponential per element, where
    recomputing the softmax takes two (its sum, then p)."""
    return _ce.cross_entropy_backward(grad_loss, torch.exp(x - lse[:, None]), target, weight, ignore_index,
                                      reduction, label_smoothing)


def cross_entropy_backward_from_lse_16(grad_loss, x, lse, target, weight, ignore_index, reduction, label_smoothing):
    """The same for 16-bit logits, computed in float32 and rounded once, without an (N, C) float32
    tensor: the textbook adds the target part by a scatter into the (N, C) part, which the
    compiled loop must first write whole, in float32, to round it after. Here the (N, C) part
    is rounded as it is written, and the N sums at the targets, computed in float32 from the
    same formula, are written over it."""
    weight = None if weight is None else weight.float()
    valid, t = _ce.valid_targets(target, ignore_index)
    grad_rows = _ce.unreduce(grad_loss.float(), reduction, target, _ce.mean_divisor(reduction, valid, t, weight, torch.float32))
    p = torch.exp(x.float() - lse[:, None])
    grad, target_part = _ce.cross_entropy_partials_in_two(p, valid, t, weight, label_smoothing, grad_rows)
    at_targets = grad.gather(1, t[:, None]) + target_part[:, None]
    return grad.to(x.dtype).scatter(1, t[:, None], at_targets.to(x.dtype))


_cross_entropy_forward = kernel(cross_entropy_forward_and_lse, eager=_ce.cross_entropy_forward,
                                worth=_many_classes, float32=True, keep=frozenset({1}))
_cross_entropy_backward = kernel(cross_entropy_backward_from_lse)
_cross_entropy_backward_16 = kernel(cross_entropy_backward_from_lse_16)
_LSE = "_nnbasics_cross_entropy_lse"  # the attribute that carries lse from forward to setup_context
_soft_cross_entropy_backward = kernel(_soft_ce.soft_cross_entropy_backward, float32=True)
_mse_backward = kernel(_mse.mse_backward)
_bce_backward = kernel(_bce.bce_backward)
_bce_with_logits_backward = kernel(_bce.bce_with_logits_backward)


class CrossEntropy(FastApply, ops.CrossEntropy):
    """Forward: one compiled pass computing each row's max, log-sum-exp and the loss, with no
    (N, C) output written; it also returns each row's log-sum-exp (lse, N numbers in float32),
    which is saved. Backward: one pass computing p = e^(x - lse) and writing m · p - q, scaled.

    The textbook recomputes the row's max and sum in backward: a third exponential per element,
    where the built-in computes two, with a faster, less exact exponential than Inductor's
    (``python -m benchmarks.ops --impl fused --ops cross_entropy --modes forward,backward``;
    docs/fused.md). Where the formulas run eagerly (fewer than ``MIN_CLASSES`` classes, inside
    ``torch.func`` or ``torch.compile``, small tensors) nothing more is saved, and backward is the
    textbook's, as it is under double backward, which must differentiate it.

    A new-style Function's forward has no ``ctx``, so lse reaches ``setup_context`` on the loss
    tensor itself (``_LSE``), and ``setup_context`` takes it off before the loss reaches the caller.
    """

    @staticmethod
    def forward(x, target, weight, ignore_index, reduction, label_smoothing):
        out = _cross_entropy_forward(x, target, weight, ignore_index, reduction, label_smoothing)
        if not isinstance(out, tuple):  # eagerly: the textbook's forward, the loss alone
            return out
        loss, lse = out
        setattr(loss, _LSE, lse)
        return loss

    @staticmethod
    def setup_context(ctx, inputs, output):
        ops.CrossEntropy.setup_context(ctx, inputs, output)
        lse = None if torch.compiler.is_compiling() else output.__dict__.pop(_LSE, None)
        if lse is not None:
            ctx.save_for_backward(*inputs[:3], lse)  # x, target, weight, lse

    @staticmethod
    def backward(ctx, grad_loss):
        x, target, weight, *lse = ctx.saved_tensors
        if lse and not torch.is_grad_enabled():
            from_lse = _cross_entropy_backward_16 if x.dtype in (torch.bfloat16, torch.float16) else _cross_entropy_backward
            grad_x = from_lse(grad_loss, x, *lse, target, weight, *ctx.options)
        else:
            grad_x = _ce.cross_entropy_backward(grad_loss, softmax_forward(x, 1), target, weight, *ctx.options)
        return grad_x, None, None, None, None, None


class SoftCrossEntropy(FastApply, ops.SoftCrossEntropy):
    """Forward: one pass per row computing max, log-sum-exp and Σ_j w_j q'_ij (-log p_ij);
    backward: one pass writing the gradients the inputs need."""

    forward = staticmethod(kernel(_soft_ce.soft_cross_entropy_forward, float32=True))

    @staticmethod
    def backward(ctx, grad_loss):
        grads = _soft_cross_entropy_backward(grad_loss, *ctx.saved_tensors, *ctx.options, ctx.needs_input_grad[:3])
        return *grads, None, None


class MSELoss(FastApply, ops.MSELoss):
    forward = staticmethod(kernel(_mse.mse_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return *_mse_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:3]), None


class BinaryCrossEntropy(FastApply, ops.BinaryCrossEntropy):
    forward = staticmethod(kernel(_bce.bce_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return *_bce_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2]), None, None


class BinaryCrossEntropyWithLogits(FastApply, ops.BinaryCrossEntropyWithLogits):
    forward = staticmethod(kernel(_bce.bce_with_logits_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        grads = _bce_with_logits_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2])
        return *grads, None, None, None


class ContiguousGrad(FastApply, ops.ContiguousGrad):  # an identity: nothing to fuse
    pass


__all__ = list(ops.__all__)
