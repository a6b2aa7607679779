"""The fast path: the same hand-written formulas, compiled into fused loops.

The reference Functions in ``nnbasics.ops`` spell each formula out as a few
tensor operations, and each operation is a separate pass over memory: the
sigmoid's backward ``grad · y · (1 - y)`` reads and writes three times what
PyTorch's single ``sigmoid_backward`` kernel does. Here every formula is
handed to ``torch.compile`` (C++/OpenMP loops on the CPU, Triton on CUDA), which
fuses it into one loop that reads each input once and writes each output once.

Nothing is re-derived: each class below subclasses its reference twin, keeps
its ``setup_context`` (what is saved) and ``jvp``, and replaces only the body
of ``forward`` and ``backward`` with the compiled version of the reference's
own formula functions. Where compiling cannot apply, the kernel runs the
formula eagerly, which is the same math:

- when autograd is recording (double backward, ``create_graph=True``): the
  formula must then be differentiable op by op;
- inside ``torch.func`` transforms (vmap, grad, jvp) and inside an outer
  ``torch.compile``, which traces the formula itself and fuses across ops.

``Linear`` is the reference's: its work is three matrix products, already
single BLAS calls, with nothing between them to fuse.

Compiling costs seconds once per dtype, device and rank (``dynamic=True``
keeps new sizes from recompiling); Inductor caches the result on disk, so a
later process pays much less.
"""
import functools
import warnings

import torch

from . import ops
from .ops import binary_cross_entropy as _bce
from .ops import cross_entropy as _ce
from .ops import dropout as _dropout
from .ops import hardtanh as _hardtanh
from .ops import leaky_relu as _leaky_relu
from .ops import mse_loss as _mse
from .ops import relu as _relu
from .ops import sigmoid as _sigmoid
from .ops import softmax as _softmax
from .ops import tanh as _tanh


def _plain(a) -> bool:
    """Not a tensor, or one with storage of its own: not a wrapper of torch.func's transforms
    or of the legacy vmap that ``gradcheck(check_batched_grad=True)`` uses."""
    return not isinstance(a, torch.Tensor) or torch._C._has_storage(a)


def _on_cpu(args) -> bool:
    return any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args)


def _kind(args) -> tuple:
    """What compiled code is specialized on: each tensor's device, dtype and rank, and the
    values of the other arguments (reduction, dim, ...)."""
    return tuple((a.device.type, a.dtype, a.dim()) if isinstance(a, torch.Tensor) else a for a in args)


def kernel(formula, *, cpu=True):
    """``formula`` compiled into one fused loop, where compiling applies (see the module docstring).

    ``cpu=False``: run the formula eagerly on CPU tensors. For the formulas that read or write
    a bool mask: Inductor's vectorized C++ converts comparisons to and from bool masks
    element by element (torch 2.13, AVX-512), so the compiled loop loses to eager ops there
    (``benchmarks/results/README.md`` has the measurement). Triton on CUDA has no such problem.

    If compiling fails (no C++ compiler; more kinds of input than Dynamo's ``recompile_limit``,
    8 compiled versions per function, ...), the kernel says so and from then on runs the
    formula eagerly for inputs of that kind (see ``_kind``), which ``run.fallbacks`` lists;
    the kinds already compiled stay compiled.
    """
    # compiles on the first call. dynamic_threads: without it Inductor's C++ loops over
    # symbolic sizes run on one thread (tanh at 16M floats here: 64 ms, with it 34 ms)
    compiled = torch.compile(formula, dynamic=True, fullgraph=True, options={"cpp.dynamic_threads": True})
    fallbacks = set()

    @functools.wraps(formula)
    def run(*args):
        if (torch.compiler.is_compiling() or torch.is_grad_enabled() or not all(map(_plain, args))
                or (not cpu and _on_cpu(args))):
            return formula(*args)
        if fallbacks and _kind(args) in fallbacks:
            return formula(*args)
        try:
            return compiled(*args)
        except Exception as exc:
            kind = _kind(args)
            fallbacks.add(kind)
            reason = (str(exc).strip() or "-").splitlines()[0]
            warnings.warn(f"nnbasics.fused: compiling {formula.__name__} failed for inputs {kind} "
                          f"({type(exc).__name__}: {reason}); running the reference formula for them instead",
                          RuntimeWarning, stacklevel=2)
            return formula(*args)

    run.fallbacks = fallbacks
    return run


# --------------------------------------------------------------------------- activations

_sigmoid_backward = kernel(_sigmoid.sigmoid_backward)
_tanh_backward = kernel(_tanh.tanh_backward)
_relu_backward = kernel(_relu.relu_backward, cpu=False)
_leaky_relu_backward = kernel(_leaky_relu.leaky_relu_backward, cpu=False)
_hardtanh_backward = kernel(_hardtanh.hardtanh_backward, cpu=False)
_dropout_apply = kernel(_dropout.dropout_apply, cpu=False)
_dropout_backward = kernel(_dropout.dropout_backward, cpu=False)
_softmax_backward = kernel(_softmax.softmax_backward)
_log_softmax_backward = kernel(_softmax.log_softmax_backward)


class Sigmoid(ops.Sigmoid):
    forward = staticmethod(kernel(_sigmoid.sigmoid_forward))

    @staticmethod
    def backward(ctx, grad_y):
        return _sigmoid_backward(grad_y, *ctx.saved_tensors)


class Tanh(ops.Tanh):
    forward = staticmethod(kernel(_tanh.tanh_forward))

    @staticmethod
    def backward(ctx, grad_y):
        return _tanh_backward(grad_y, *ctx.saved_tensors)


class ReLU(ops.ReLU):
    forward = staticmethod(kernel(_relu.relu_forward, cpu=False))  # y and its 1-byte mask in one loop

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None
        return _relu_backward(grad_y, *ctx.saved_tensors)


class LeakyReLU(ops.LeakyReLU):
    forward = staticmethod(kernel(_leaky_relu.leaky_relu_forward, cpu=False))

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None
        return _leaky_relu_backward(grad_y, *ctx.saved_tensors, ctx.negative_slope), None


class Hardtanh(ops.Hardtanh):
    forward = staticmethod(kernel(_hardtanh.hardtanh_forward, cpu=False))

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None, None
        return _hardtanh_backward(grad_y, *ctx.saved_tensors), None, None


class Dropout(ops.Dropout):
    @staticmethod
    def forward(x, p):
        # keep ~ Bernoulli(1 - p), drawn as u >= p with u ~ U[0, 1): the same distribution as the
        # reference's bernoulli_(1 - p), but rand_like is about 3x faster than bernoulli_ on the CPU
        # (0.78 vs 2.3 ms for 256x1024 here), and the draw is most of what dropout costs. Unlike
        # the reference, the mask is therefore not the one torch's dropout draws from the same seed.
        return _dropout_apply(x, torch.rand_like(x) >= p, p)

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None
        return _dropout_backward(grad_y, *ctx.saved_tensors, ctx.p), None


class Softmax(ops.Softmax):
    forward = staticmethod(kernel(_softmax.softmax_forward))

    @staticmethod
    def backward(ctx, grad_y):
        return _softmax_backward(grad_y, *ctx.saved_tensors, ctx.dim), None


class LogSoftmax(ops.LogSoftmax):
    forward = staticmethod(kernel(_softmax.log_softmax_forward))

    @staticmethod
    def backward(ctx, grad_z):
        return _log_softmax_backward(grad_z, *ctx.saved_tensors, ctx.dim), None


Linear = ops.Linear


# --------------------------------------------------------------------------- losses

_cross_entropy_backward = kernel(_ce.cross_entropy_backward)
_mse_backward = kernel(_mse.mse_backward)
_bce_backward = kernel(_bce.bce_backward)
_bce_with_logits_backward = kernel(_bce.bce_with_logits_backward)


class CrossEntropy(ops.CrossEntropy):
    """Forward: one pass computing max, log-sum-exp and the loss, with no (N, C) output written;
    backward: one pass recomputing p from the saved logits and writing a · p - q, scaled."""

    forward = staticmethod(kernel(_ce.cross_entropy_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return _cross_entropy_backward(grad_loss, *ctx.saved_tensors, *ctx.options), None, None, None, None, None


class MSELoss(ops.MSELoss):
    forward = staticmethod(kernel(_mse.mse_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return *_mse_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:3]), None


class BinaryCrossEntropy(ops.BinaryCrossEntropy):
    forward = staticmethod(kernel(_bce.bce_loss))

    @staticmethod
    def backward(ctx, grad_loss):
        return *_bce_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2]), None, None


class BinaryCrossEntropyWithLogits(ops.BinaryCrossEntropyWithLogits):
    forward = staticmethod(kernel(_bce.bce_with_logits_loss))

    @staticmethod
    def backward(ctx, grad_loss):
        grads = _bce_with_logits_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2])
        return *grads, None, None, None


__all__ = list(ops.__all__)
COMPILABLE = {name: ops.without_jvp(globals()[name]) for name in __all__}


# --------------------------------------------------------------------------- cross-entropy that overwrites its input

def _ce_rows_and_grad_(x, target, weight, ignore_index, label_smoothing):
    """Loss per row, and x overwritten by dl/dx = a·p - q (same formulas as the reference)."""
    rows = _ce.cross_entropy_rows(x, target, weight, ignore_index, label_smoothing)
    x.copy_(_ce.cross_entropy_grad(x, target, weight, ignore_index, label_smoothing))
    return rows


_ce_rows_and_grad_kernel = kernel(_ce_rows_and_grad_)
CHUNK_BYTES = 64 * 2**20  # rows are processed in chunks of about this size, bounding temporaries


class CrossEntropyInPlace(torch.autograd.Function):
    """Softmax cross-entropy that computes its gradient during forward, into the logits' own memory.

    The trick of Liger-Kernel: dl/dx does not depend on the upstream gradient except through one
    scale per row, so it can be computed while the logits are in cache, and stored *over the
    logits*, which nothing needs any more. Backward then only scales it in place. Peak memory
    drops from logits + log-probabilities + gradient (three (N, C) tensors) to the logits alone.

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
        rows = torch.cat([
            _ce_rows_and_grad_kernel(xc, tc, weight, ignore_index, label_smoothing)
            for xc, tc in zip(x.split(rows_per_chunk), target.split(rows_per_chunk))
        ]) if x.shape[0] else x.new_zeros(0)
        total = _ce.total_weight(target, weight, ignore_index, x.dtype)
        return _ce.reduce(rows, reduction, total), x

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
        total = _ce.total_weight(target, weight, ctx.ignore_index, grad.dtype)
        scale = _ce.unreduce(grad_loss, ctx.reduction, grad[:, 0], total)
        return grad.mul_(scale[:, None]), None, None, None, None, None


def cross_entropy_(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """``cross_entropy`` that overwrites ``input`` (N, C) with its own gradient (see CrossEntropyInPlace).

    Use it where the logits are not needed after the loss, e.g. ``loss = cross_entropy_(model(x), y)``.
    Without autograd (no_grad, or input not requiring grad) it computes the loss and leaves input intact.
    """
    from .functional import _check_class_targets, _reduction

    reduction = _reduction(None, None, reduction)
    _check_class_targets(input, target, ignore_index)
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
