"""Sigmoid as a ``torch.library.custom_op``: the other modern way to give PyTorch an op of your own.

``nnbasics.ops.Sigmoid`` is a ``torch.autograd.Function``: Python that autograd calls around its
forward and backward. A custom op is registered with PyTorch's dispatcher instead, as
``torch.ops.nnbasics.sigmoid``, and PyTorch treats it as one opaque operator:

- ``register_fake`` says what the output looks like (shape, dtype, device) without computing it,
  so ``torch.compile`` traces the op without running it and never looks inside;
- ``register_autograd`` gives its backward (``setup_context`` saves what backward needs, as in
  a Function);
- ``torch.library.opcheck`` tests the registration (fake tensor, autograd, schema) in one call.

The math is the same as ``nnbasics.ops.sigmoid``'s: the forward is its very function, the backward
its formula grad · y · (1 - y). ``docs/checker.md`` says when to choose which, with the per-call
overhead of each measured by ``benchmarks/overhead.py``.
"""
import torch

from ..ops.sigmoid import sigmoid_derivative_times, sigmoid_forward


@torch.library.custom_op("nnbasics::sigmoid", mutates_args=())
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """y = σ(x), elementwise. The op's real kernel: called with plain tensors, for every device."""
    return sigmoid_forward(x)


@sigmoid.register_fake
def _(x):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output)


def _backward(ctx, grad_y):
    (y,) = ctx.saved_tensors
    return sigmoid_derivative_times(grad_y, y)  # grad_y · σ(x)(1 - σ(x)), as in nnbasics.ops.sigmoid


sigmoid.register_autograd(_backward, setup_context=_setup_context)
