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
later process pays much less. The measurements behind the choices made here are
in ``benchmarks/results/README.md`` ("What the fast path compiles on the CPU").
"""
import functools
import types
import warnings

import torch

from . import ops
from ._torch_private import has_storage
from .ops import activation_dropout as _act_dropout
from .ops import binary_cross_entropy as _bce
from .ops import cross_entropy as _ce
from .ops import dropout as _dropout
from .ops import hardtanh as _hardtanh
from .ops import leaky_relu as _leaky_relu
from .ops import mse_loss as _mse
from .ops import relu as _relu
from .ops import sigmoid as _sigmoid
from .ops import soft_cross_entropy as _soft_ce
from .ops import softmax as _softmax
from .ops import tanh as _tanh


def _plain(a) -> bool:
    """Not a tensor, or a non-empty one with storage of its own (not a torch.func or legacy-vmap
    wrapper), holding data (not on meta). An empty or meta tensor has nothing to fuse, and would
    cost a compile of its own."""
    return not isinstance(a, torch.Tensor) or (has_storage(a) and a.numel() > 0 and not a.is_meta)


MIN_ELEMENTS = 4096
"""Below this many elements in its largest tensor, a kernel runs its formula eagerly: a
compiled call has a fixed cost (Dynamo's guards, Inductor's wrapper) that exceeds the whole
eager formula on small tensors (measured: ``benchmarks/results/README.md``, "Small tensors"),
and every new kind of input would cost a compile of its own for no gain."""


def _large(args, min_elements: int) -> bool:
    return any(isinstance(a, torch.Tensor) and a.numel() >= min_elements for a in args)


def _on_cpu(args) -> bool:
    return any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args)


def _kind(args) -> tuple:
    """What compiled code is specialized on: each tensor's device, dtype, rank and whether it is
    contiguous, and the values of the other arguments (reduction, dim, ...)."""
    return tuple((a.device.type, a.dtype, a.dim(), a.is_contiguous()) if isinstance(a, torch.Tensor) else a
                 for a in args)


def _own_copy(formula):
    """``formula`` as a new function object with its own code object.

    Dynamo keeps its compiled versions, and its ``recompile_limit`` (8), per code object; a
    copy gives each kind of input its own cache and its own budget."""
    code = formula.__code__.replace()
    copy = types.FunctionType(code, formula.__globals__, formula.__name__, formula.__defaults__, formula.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = formula.__kwdefaults__, formula.__qualname__
    return copy


def kernel(formula, *, cpu=True, min_elements=None):
    """``formula`` compiled into one fused loop, where compiling applies (see the module docstring).

    Each kind of input (``_kind``: devices, dtypes, ranks, contiguity, option values) gets a
    compiled version of its own, made on its first call; ``dynamic=True`` lets it serve every
    size. A program that varies dtypes, ranks or options thus does not run into Dynamo's
    recompile limit, which counts the versions of one function (8): each kind has its own.

    ``cpu=False``: run the formula eagerly on CPU tensors. For the formulas that read or write
    a bool mask: Inductor's vectorized C++ handles bool masks slowly (torch 2.13, AVX-512), so
    the compiled loop loses to eager ops there (measured in ``benchmarks/results/README.md``).
    Triton on CUDA has no such problem.

    ``min_elements``: run eagerly unless some tensor has at least this many elements (default:
    ``MIN_ELEMENTS``, read at each call).

    If compiling fails (no C++ compiler, ...), the kernel says so in one warning and from then
    on runs the formula eagerly for inputs of that kind, which ``run.fallbacks`` lists;
    ``run.compiled`` maps each compiled kind to its compiled function.
    """
    compiled = {}  # kind -> compiled function
    fallbacks = set()

    @functools.wraps(formula)
    def run(*args):
        if (torch.compiler.is_compiling() or torch.is_grad_enabled() or not all(map(_plain, args))
                or (not cpu and _on_cpu(args))
                or not _large(args, MIN_ELEMENTS if min_elements is None else min_elements)):
            return formula(*args)
        kind = _kind(args)
        fn = compiled.get(kind)
        if fn is None:
            if kind in fallbacks:
                return formula(*args)
            # cpp.dynamic_threads: without it Inductor's C++ loops over symbolic sizes run on one thread
            fn = compiled[kind] = torch.compile(_own_copy(formula), dynamic=True, fullgraph=True,
                                                options={"cpp.dynamic_threads": True})
        try:
            # Detached: a view (rows made by movedim/reshape, x[None], ...) carries its base, and
            # Dynamo guards on the sizes of that base, so views of differently shaped tensors
            # would recompile the same kind again and again. Nothing here is recorded anyway.
            return fn(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
        except Exception as exc:  # noqa: BLE001 - the fallback must never crash: any compile failure runs the formula
            del compiled[kind]
            fallbacks.add(kind)
            reason = (str(exc).strip() or "-").splitlines()[0]
            warnings.warn(f"nnbasics.fused: compiling {formula.__name__} failed for inputs {kind} "
                          f"({type(exc).__name__}: {reason}); running the reference formula for them instead",
                          RuntimeWarning, stacklevel=2)
            return formula(*args)

    run.fallbacks, run.compiled = fallbacks, compiled
    return run


# --------------------------------------------------------------------------- activations

_sigmoid_derivative_times = kernel(_sigmoid.sigmoid_derivative_times)
_tanh_derivative_times = kernel(_tanh.tanh_derivative_times)
_relu_derivative_times = kernel(_relu.relu_derivative_times)
_leaky_relu_derivative_times = kernel(_leaky_relu.leaky_relu_derivative_times)
_hardtanh_derivative_times = kernel(_hardtanh.hardtanh_derivative_times)
_dropout_derivative_times = kernel(_dropout.dropout_derivative_times, cpu=False)
_activation_dropout_forward = kernel(_act_dropout.activation_dropout_forward, cpu=False)
_activation_dropout_derivative_times = kernel(_act_dropout.activation_dropout_derivative_times, cpu=False)
_softmax_jacobian_times = kernel(_softmax.softmax_jacobian_times)
_log_softmax_backward = kernel(_softmax.log_softmax_backward)


class Sigmoid(ops.Sigmoid):
    forward = staticmethod(kernel(_sigmoid.sigmoid_forward))

    @staticmethod
    def backward(ctx, grad_y):
        return _sigmoid_derivative_times(grad_y, *ctx.saved_tensors)


class Tanh(ops.Tanh):
    # forward: the reference's, one ATen op (torch.tanh). Compiled, Inductor's vectorized tanh
    # took 1.79 ms against ATen's 0.36 ms at 1M float32 elements (benchmarks/results/README.md).

    @staticmethod
    def backward(ctx, grad_y):
        return _tanh_derivative_times(grad_y, *ctx.saved_tensors)


class ReLU(ops.ReLU):
    # forward: the reference's, one ATen op (clamp_min) that compiling would not beat.

    @staticmethod
    def backward(ctx, grad_y):
        return _relu_derivative_times(grad_y, *ctx.saved_tensors)


class LeakyReLU(ops.LeakyReLU):
    forward = staticmethod(kernel(_leaky_relu.leaky_relu_forward))

    @staticmethod
    def backward(ctx, grad_y):
        return _leaky_relu_derivative_times(grad_y, *ctx.saved_tensors, ctx.negative_slope), None


class Hardtanh(ops.Hardtanh):
    # forward: the reference's, one ATen op (clamp).

    @staticmethod
    def backward(ctx, grad_y):
        return _hardtanh_derivative_times(grad_y, *ctx.saved_tensors, ctx.min_val, ctx.max_val), None, None


class Dropout(ops.Dropout):
    @staticmethod
    def forward(x, p):
        # The reference's draw (16-bit integers against a threshold, ops/dropout.py): random
        # numbers are not compiled, and the same seed gives the reference's mask.
        mask = _dropout.draw_keep(x, p)
        return _dropout_derivative_times(x, mask, _dropout.drawn_p(p)), mask

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None, None
        return _dropout_derivative_times(grad_y, *ctx.saved_tensors, ctx.p), None


class ActivationDropout(ops.ActivationDropout):
    @staticmethod
    def forward(x, activation, p, params):
        # The reference's draw (see Dropout); the rest writes a bool mask, so it runs eagerly on the CPU.
        return _activation_dropout_forward(x, activation, _dropout.drawn_p(p), params, _dropout.draw_keep(x, p))

    @staticmethod
    def backward(ctx, grad_z, _grad_mask):
        return _act_dropout.backward_with(_activation_dropout_derivative_times, ctx, grad_z)


class Softmax(ops.Softmax):
    forward = staticmethod(kernel(_softmax.softmax_forward))

    @staticmethod
    def backward(ctx, grad_y):
        return _softmax_jacobian_times(grad_y, *ctx.saved_tensors, ctx.dim), None


class LogSoftmax(ops.LogSoftmax):
    forward = staticmethod(kernel(_softmax.log_softmax_forward))

    @staticmethod
    def backward(ctx, grad_z):
        return _log_softmax_backward(grad_z, *ctx.saved_tensors, ctx.dim), None


Linear = ops.Linear


# --------------------------------------------------------------------------- losses

_cross_entropy_backward = kernel(_ce.cross_entropy_backward)
_soft_cross_entropy_backward = kernel(_soft_ce.soft_cross_entropy_backward)
_mse_backward = kernel(_mse.mse_backward)
_bce_backward = kernel(_bce.bce_backward)
_bce_with_logits_backward = kernel(_bce.bce_with_logits_backward)


class CrossEntropy(ops.CrossEntropy):
    """Forward: one pass computing max, log-sum-exp and the loss, with no (N, C) output written;
    backward: one pass recomputing p from the saved logits and writing m · p - q, scaled."""

    forward = staticmethod(kernel(_ce.cross_entropy_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return _cross_entropy_backward(grad_loss, *ctx.saved_tensors, *ctx.options), None, None, None, None, None


class SoftCrossEntropy(ops.SoftCrossEntropy):
    """Forward: one pass per row computing max, log-sum-exp and Σ_j w_j q'_ij (-log p_ij);
    backward: one pass writing the gradients the inputs need."""

    forward = staticmethod(kernel(_soft_ce.soft_cross_entropy_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        grads = _soft_cross_entropy_backward(grad_loss, *ctx.saved_tensors, *ctx.options, ctx.needs_input_grad[:3])
        return *grads, None, None


class MSELoss(ops.MSELoss):
    forward = staticmethod(kernel(_mse.mse_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return *_mse_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:3]), None


class BinaryCrossEntropy(ops.BinaryCrossEntropy):
    forward = staticmethod(kernel(_bce.bce_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        return *_bce_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2]), None, None


class BinaryCrossEntropyWithLogits(ops.BinaryCrossEntropyWithLogits):
    forward = staticmethod(kernel(_bce.bce_with_logits_forward))

    @staticmethod
    def backward(ctx, grad_loss):
        grads = _bce_with_logits_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2])
        return *grads, None, None, None


ContiguousGrad = ops.ContiguousGrad  # an identity: nothing to fuse

__all__ = list(ops.__all__)
