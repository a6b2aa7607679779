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
    return not isinstance(a, torch.Tensor) or not torch._C._functorch.is_functorch_wrapped_tensor(a)


def kernel(formula):
    """``formula`` compiled into one fused loop, where compiling applies (see the module docstring)."""
    compiled = None

    @functools.wraps(formula)
    def run(*args):
        nonlocal compiled
        if torch.compiler.is_compiling() or torch.is_grad_enabled() or not all(map(_plain, args)):
            return formula(*args)
        if compiled is None:
            compiled = torch.compile(formula, dynamic=True, fullgraph=True)
        try:
            return compiled(*args)
        except Exception as exc:  # e.g. no C++ compiler on this machine: keep working, say so once
            warnings.warn(f"nnbasics.fused: compiling {formula.__name__} failed ({type(exc).__name__}: {exc}); "
                          "running the reference formula instead", RuntimeWarning, stacklevel=2)
            compiled = formula
            return formula(*args)

    return run


# --------------------------------------------------------------------------- activations

_sigmoid_backward = kernel(_sigmoid.sigmoid_backward)
_tanh_backward = kernel(_tanh.tanh_backward)
_relu_backward = kernel(_relu.relu_backward)
_leaky_relu_backward = kernel(_leaky_relu.leaky_relu_backward)
_hardtanh_backward = kernel(_hardtanh.hardtanh_backward)
_dropout_apply = kernel(_dropout.dropout_apply)
_dropout_backward = kernel(_dropout.dropout_backward)
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
    forward = staticmethod(kernel(_relu.relu_forward))  # y and its 1-byte mask in one loop

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        return _relu_backward(grad_y, *ctx.saved_tensors)


class LeakyReLU(ops.LeakyReLU):
    forward = staticmethod(kernel(_leaky_relu.leaky_relu_forward))

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        return _leaky_relu_backward(grad_y, *ctx.saved_tensors, ctx.negative_slope), None


class Hardtanh(ops.Hardtanh):
    forward = staticmethod(kernel(_hardtanh.hardtanh_forward))

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        return _hardtanh_backward(grad_y, *ctx.saved_tensors), None, None


class Dropout(ops.Dropout):
    @staticmethod
    def forward(x, p):
        # The random draw stays eager (the same bernoulli_ as torch's CPU dropout, so the same
        # seed drops the same elements); the arithmetic after it is one fused loop.
        return _dropout_apply(x, torch.empty_like(x).bernoulli_(1 - p), p)

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
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
