"""Drop-in twins of ``torch.nn.functional``, computed by the hand-written ops.

Every function here has the name, parameters and defaults of its
``torch.nn.functional`` namesake, plus one keyword-only argument, ``impl``:

- ``impl="custom"`` (default): the readable reference in ``nnbasics.ops``;
- ``impl="fused"``: the same formulas compiled into fused loops (``nnbasics.fused``).

This module is the layer between a user and the autograd Functions. It does
what ``torch.nn.functional`` does around its kernels and nothing else:

1. check the arguments (``nnbasics.arguments``), with errors that name the bad value and the fix;
2. reshape (class dimension of N-d cross-entropy, unbatched inputs, ``inplace``);
3. call the Function, cast for ``torch.autocast`` the way the built-in op is cast
   (``nnbasics.dispatch.apply``).
"""
import functools
import warnings

import torch

from . import arguments as check
from .dispatch import IMPLS, apply, apply_in_place  # noqa: F401 (IMPLS: what impl= accepts, for users)
from .ops.hardtanh import hardtanh_saves_output
from .ops.leaky_relu import leaky_relu_saves_output

__all__ = [
    "linear", "sigmoid", "relu", "cross_entropy", "tanh", "leaky_relu", "hardtanh", "softmax",
    "log_softmax", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "dropout",
]


# --------------------------------------------------------------------------- layers

def linear(input, weight, bias=None, *, impl="custom"):
    """y = x Wᵀ + b. input (*, in), weight (out, in), bias (out,) → (*, out)."""
    check.linear(input, weight, bias)
    return apply("Linear", impl, input.device, input, weight, bias)


# --------------------------------------------------------------------------- activations

def sigmoid(input, *, impl="custom"):
    """σ(x) = 1 / (1 + e^(-x)), elementwise."""
    return apply("Sigmoid", impl, input.device, input)


def tanh(input, *, impl="custom"):
    """tanh(x), elementwise."""
    return apply("Tanh", impl, input.device, input)


def relu(input, inplace=False, *, impl="custom"):
    """max(x, 0), elementwise."""
    if inplace:
        return apply_in_place("ReLU", impl, input.device, True, input)
    return apply("ReLU", impl, input.device, input)


def leaky_relu(input, negative_slope=0.01, inplace=False, *, impl="custom"):
    """x if x > 0 else negative_slope · x, elementwise."""
    check.floating("leaky_relu", input)
    if inplace:
        return apply_in_place("LeakyReLU", impl, input.device, leaky_relu_saves_output(negative_slope), input,
                              float(negative_slope))
    return apply("LeakyReLU", impl, input.device, input, float(negative_slope))


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False, *, impl="custom"):
    """clamp(x, min_val, max_val), elementwise."""
    check.hardtanh(min_val, max_val)
    if inplace:
        return apply_in_place("Hardtanh", impl, input.device, hardtanh_saves_output(input.dtype, min_val, max_val),
                              input, float(min_val), float(max_val))
    return apply("Hardtanh", impl, input.device, input, float(min_val), float(max_val))


def dropout(input, p=0.5, training=True, inplace=False, *, impl="custom"):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    check.dropout(p)
    if not training or p == 0:  # the built-in returns the input itself then
        return input
    if inplace:
        out, _mask = apply_in_place("Dropout", impl, input.device, True, input, float(p))
    else:
        out, _mask = apply("Dropout", impl, input.device, input, float(p))
    return out


def softmax(input, dim=None, _stacklevel=3, dtype=None, *, impl="custom"):
    """e^(x_i) / Σ_j e^(x_j) along dim."""
    dim = check.softmax_dim("softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    check.floating("softmax", input)
    # The built-in's kernel works on contiguous memory: its output and gradient are contiguous.
    if input.requires_grad:
        input = apply("ContiguousGrad", impl, input.device, input)
    return apply("Softmax", impl, input.device, input.contiguous(), dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None, *, impl="custom"):
    """x_i - log Σ_j e^(x_j) along dim."""
    dim = check.softmax_dim("log_softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    check.floating("log_softmax", input)
    # The built-in's kernel works on contiguous memory: its output and gradient are contiguous.
    if input.requires_grad:
        input = apply("ContiguousGrad", impl, input.device, input)
    return apply("LogSoftmax", impl, input.device, input.contiguous(), dim)


# --------------------------------------------------------------------------- losses

def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
    *,
    impl="custom",
):
    """Softmax cross-entropy of logits input (N, C) or (N, C, d1, ...) against class indices
    target (N,) or (N, d1, ...), or against class probabilities: a floating target of the
    input's shape (as in torch, the shape tells which). Returns a scalar, or the input's shape
    without the class dimension for reduction='none'."""
    reduction = check.reduction(size_average, reduce, reduction)
    soft = target.shape == input.shape
    if soft:
        check.probability_targets(input, target, ignore_index)
    else:
        check.class_targets(input, target, ignore_index)
    n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    check.cross_entropy_options(n_classes, weight, label_smoothing, weight_differentiable=soft)

    # Rows of contiguous (N, C) tensors give contiguous gradients by themselves; anything else
    # goes through ContiguousGrad (one more Function call, so only where it is needed).
    plain_rows = all(t.dim() == 2 and t.is_contiguous() for t in ((input, target) if soft else (input,)))

    def rows(t):
        """The rows (N', C) the Functions see: the class dimension last, the rest flattened; the
        gradient comes back contiguous, as the built-in's does."""
        if plain_rows:
            return t
        if t.requires_grad:
            t = apply("ContiguousGrad", impl, t.device, t)
        return t.movedim(1, -1).reshape(-1, n_classes) if t.dim() > 1 else t[None]

    if soft:
        # torch computes in the promoted dtype of the logits, the probabilities and the weights
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in (input, target, weight) if t is not None])
        input, target = input.to(dtype), target.to(dtype)
        weight = None if weight is None else weight.to(dtype)
        loss = apply("SoftCrossEntropy", impl, input.device, rows(input), rows(target), weight, reduction,
                     float(label_smoothing))
    else:
        loss = apply("CrossEntropy", impl, input.device, rows(input), target.reshape(-1).long(), weight,
                     int(ignore_index), reduction, float(label_smoothing))
    batch_shape = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    return loss.reshape(batch_shape) if reduction == "none" else loss


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, impl="custom"):
    """Σ w (x - y)², reduced. input, target (and weight): same shape."""
    reduction = check.reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
            "This will likely lead to incorrect results due to broadcasting. Please ensure they have the same size.",
            stacklevel=2,
        )
        input, target = torch.broadcast_tensors(input, target)
    check.floating("mse_loss", input)
    check.weight_shape("mse_loss", weight, input)
    return apply("MSELoss", impl, input.device, input, target, weight, reduction)


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", *, impl="custom"
):
    """-w (y log p + (1 - y) log(1 - p)), reduced. input p in [0, 1] and target: same shape."""
    reduction = check.reduction(size_average, reduce, reduction)
    check.same_shape("binary_cross_entropy", input, target)
    check.no_grad_for("binary_cross_entropy", "weight", weight)
    if input.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        raise RuntimeError(
            "binary_cross_entropy is unsafe to autocast on CUDA (as is torch.nn.functional.binary_cross_entropy): "
            "use binary_cross_entropy_with_logits on the logits instead of a sigmoid followed by this loss"
        )
    check.probabilities("binary_cross_entropy", input)
    return apply("BinaryCrossEntropy", impl, input.device, input, target, weight, reduction)


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *, impl="custom"
):
    """Binary cross-entropy of σ(input), computed stably from the logits; pos_weight weighs positives."""
    reduction = check.reduction(size_average, reduce, reduction)
    check.same_shape("binary_cross_entropy_with_logits", input, target)
    check.no_grad_for("binary_cross_entropy_with_logits", "weight", weight)
    check.no_grad_for("binary_cross_entropy_with_logits", "pos_weight", pos_weight)
    return apply("BinaryCrossEntropyWithLogits", impl, input.device, input, target, weight, pos_weight, reduction)
