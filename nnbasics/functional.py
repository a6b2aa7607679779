"""Drop-in twins of ``torch.nn.functional``, computed by the hand-written ops.

Every function here has the name, parameters and defaults of its
``torch.nn.functional`` namesake, plus one keyword-only argument, ``impl``:

- ``impl="custom"`` (default): the textbook Functions of ``nnbasics.ops``;
- ``impl="fused"``: the fast path, ``nnbasics.fused``.

Each function does what ``torch.nn.functional`` does around its kernels, in one hop:
check the arguments (``nnbasics._arguments``, errors that name the bad value and the fix),
pick the Function for ``impl`` and apply it (``_apply``: cast as ``torch.autocast`` casts the
built-in op, as the Function's ``autocast`` attribute says). Reshaping (N-d cross-entropy,
unbatched inputs) and ``inplace`` are done here too, as in torch.
"""
import functools
import types
import warnings

import torch

from . import _arguments as check
from . import fused, ops
from .ops.hardtanh import hardtanh_saves_output
from .ops.leaky_relu import leaky_relu_saves_output

__all__ = [
    "linear", "sigmoid", "relu", "cross_entropy", "tanh", "leaky_relu", "hardtanh", "softmax",
    "log_softmax", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "dropout",
]

IMPLS = ("custom", "fused")
_MODULES = {"custom": ops, "fused": fused}


# torch.compile (Dynamo, torch 2.13) refuses to trace a Function that defines ``jvp`` ("Unsupported
# custom jvp"), so while compiling each Function is applied through a twin without it (forward-mode
# AD is not supported under torch.compile anyway). Dynamo cannot trace the making of a class, so
# the twins are made here, once, at import.
_COMPILABLE = {
    impl: types.SimpleNamespace(**{
        name: type(name, (fn,), {"jvp": torch.autograd.Function.jvp, "__module__": fn.__module__})
        for name, fn in ((name, getattr(module, name)) for name in module.__all__)})
    for impl, module in _MODULES.items()
}
# Each Function's ``autocast`` attribute (none: the elementwise ops, which keep their input's
# dtype), read here once: Dynamo cannot read a Function's attributes while it traces, only its id.
_AUTOCAST = {id(fn): getattr(fn, "autocast", None)
             for namespace in (*_MODULES.values(), *_COMPILABLE.values())
             for fn in (getattr(namespace, name) for name in ops.__all__)}


def implementation(impl, choices=IMPLS):
    """The autograd Functions of ``impl``: ``nnbasics.ops`` or ``nnbasics.fused`` (while
    ``torch.compile`` traces, their twins without ``jvp``). The one place ``impl`` is checked
    (``choices``: what the caller accepts)."""
    if impl not in choices:
        raise ValueError(f"impl={impl!r} is not an implementation: use one of {choices}")
    if impl in _MODULES and torch.compiler.is_compiling():
        return _COMPILABLE[impl]
    return _MODULES.get(impl)


_AUTOCAST_ELIGIBLE = (torch.float16, torch.bfloat16, torch.float32)


def _apply(fn, *args):
    """``fn.apply(*args)``, the arguments cast first as ``torch.autocast`` casts the built-in op.

    ``fn.autocast`` says how (PyTorch's autocast op lists): "low" runs in the autocast dtype,
    "float32" in float32, None in the input's own dtype; a dict gives it per device type. Inside
    the Function autocast is off: the hand-written math runs in the dtype chosen here, not re-cast
    op by op (under CUDA autocast ``torch.exp`` alone would run in float32 and leak a float32 output).
    """
    device_type = args[0].device.type
    # A device without autocast (meta) is asked nothing: torch.is_autocast_enabled raises there.
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return fn.apply(*args)
    policy = _AUTOCAST[id(fn)]
    policy = policy.get(device_type) if isinstance(policy, dict) else policy
    if policy is not None:
        dtype = torch.get_autocast_dtype(device_type) if policy == "low" else torch.float32
        args = tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.dtype in _AUTOCAST_ELIGIBLE else a for a in args)
    with torch.autocast(device_type, enabled=False):
        return fn.apply(*args)


def _in_place(in_place_fn, fn, saves_output, x, *args):
    """``inplace=True``: the (first) result written into x, and x returned in its place.

    ``in_place_fn`` (``ops.ReLU_``, ...) writes into x and marks it dirty; it is used where the op
    saves its output (``saves_output``), which is then x itself, and where neither
    ``torch.compile`` nor a ``torch.func`` transform runs (they trace in-place Functions
    differently). Elsewhere ``fn`` computes the result out of place and it is copied into x: the
    same values and gradients, with the output kept besides the input; an op that saves its input
    gets a copy of it, which the write does not touch (so leaky_relu_ with a negative slope, which
    torch refuses in backward, works here).
    """
    if saves_output and not torch.compiler.is_compiling() and not check.is_transformed(x):
        return _apply(in_place_fn, x, *args)
    out = _apply(fn, x if saves_output else x.clone(), *args)
    return (x.copy_(out[0]), *out[1:]) if isinstance(out, tuple) else x.copy_(out)


# --------------------------------------------------------------------------- layers

def linear(input, weight, bias=None, *, impl="custom"):
    """y = x Wᵀ + b. input (*, in), weight (out, in), bias (out,) → (*, out)."""
    check.linear(input, weight, bias)
    return _apply(implementation(impl).Linear, input, weight, bias)


# --------------------------------------------------------------------------- activations

def sigmoid(input, *, impl="custom"):
    """σ(x) = 1 / (1 + e^(-x)), elementwise."""
    return _apply(implementation(impl).Sigmoid, input)


def tanh(input, *, impl="custom"):
    """tanh(x), elementwise."""
    return _apply(implementation(impl).Tanh, input)


def relu(input, inplace=False, *, impl="custom"):
    """max(x, 0), elementwise."""
    fns = implementation(impl)
    if inplace:
        return _in_place(fns.ReLU_, fns.ReLU, True, input)
    return _apply(fns.ReLU, input)


def leaky_relu(input, negative_slope=0.01, inplace=False, *, impl="custom"):
    """x if x > 0 else negative_slope · x, elementwise."""
    fns = implementation(impl)
    check.floating("leaky_relu", input)
    if inplace:
        return _in_place(fns.LeakyReLU_, fns.LeakyReLU, leaky_relu_saves_output(negative_slope), input,
                         float(negative_slope))
    return _apply(fns.LeakyReLU, input, float(negative_slope))


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False, *, impl="custom"):
    """clamp(x, min_val, max_val), elementwise."""
    fns = implementation(impl)
    check.hardtanh(min_val, max_val)
    if inplace:
        return _in_place(fns.Hardtanh_, fns.Hardtanh, hardtanh_saves_output(input.dtype, min_val, max_val),
                         input, float(min_val), float(max_val))
    return _apply(fns.Hardtanh, input, float(min_val), float(max_val))


def dropout(input, p=0.5, training=True, inplace=False, *, impl="custom"):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    fns = implementation(impl)
    check.dropout(p)
    if not training or p == 0:  # the built-in returns the input itself then
        return input
    if inplace:
        out, _mask = _in_place(fns.Dropout_, fns.Dropout, True, input, float(p))
    else:
        out, _mask = _apply(fns.Dropout, input, float(p))
    return out


def softmax(input, dim=None, _stacklevel=3, dtype=None, *, impl="custom"):
    """e^(x_i) / Σ_j e^(x_j) along dim."""
    fns = implementation(impl)
    dim = check.softmax_dim("softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    check.floating("softmax", input)
    # The built-in's kernel works on contiguous memory: its output and gradient are contiguous.
    if input.requires_grad:
        input = _apply(fns.ContiguousGrad, input)
    return _apply(fns.Softmax, input.contiguous(), dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None, *, impl="custom"):
    """x_i - log Σ_j e^(x_j) along dim."""
    fns = implementation(impl)
    dim = check.softmax_dim("log_softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    check.floating("log_softmax", input)
    # The built-in's kernel works on contiguous memory: its output and gradient are contiguous.
    if input.requires_grad:
        input = _apply(fns.ContiguousGrad, input)
    return _apply(fns.LogSoftmax, input.contiguous(), dim)


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
    fns = implementation(impl)
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
            t = _apply(fns.ContiguousGrad, t)
        return t.movedim(1, -1).reshape(-1, n_classes) if t.dim() > 1 else t[None]

    if soft:
        # torch computes in the promoted dtype of the logits, the probabilities and the weights
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in (input, target, weight) if t is not None])
        input, target = input.to(dtype), target.to(dtype)
        weight = None if weight is None else weight.to(dtype)
        loss = _apply(fns.SoftCrossEntropy, rows(input), rows(target), weight, reduction, float(label_smoothing))
    else:
        loss = _apply(fns.CrossEntropy, rows(input), target.reshape(-1).long(), weight, int(ignore_index), reduction,
                      float(label_smoothing))
    batch_shape = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    return loss.reshape(batch_shape) if reduction == "none" else loss


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, impl="custom"):
    """Σ w (x - y)², reduced. input, target (and weight): same shape."""
    fns = implementation(impl)
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
    return _apply(fns.MSELoss, input, target, weight, reduction)


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", *, impl="custom"
):
    """-w (y log p + (1 - y) log(1 - p)), reduced. input p in [0, 1] and target: same shape."""
    fns = implementation(impl)
    reduction = check.reduction(size_average, reduce, reduction)
    check.same_shape("binary_cross_entropy", input, target)
    check.no_grad_for("binary_cross_entropy", "weight", weight)
    if input.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        raise RuntimeError(
            "binary_cross_entropy is unsafe to autocast on CUDA (as is torch.nn.functional.binary_cross_entropy): "
            "use binary_cross_entropy_with_logits on the logits instead of a sigmoid followed by this loss"
        )
    check.probabilities("binary_cross_entropy", input)
    return _apply(fns.BinaryCrossEntropy, input, target, weight, reduction)


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *, impl="custom"
):
    """Binary cross-entropy of σ(input), computed stably from the logits; pos_weight weighs positives."""
    fns = implementation(impl)
    reduction = check.reduction(size_average, reduce, reduction)
    check.same_shape("binary_cross_entropy_with_logits", input, target)
    check.no_grad_for("binary_cross_entropy_with_logits", "weight", weight)
    check.no_grad_for("binary_cross_entropy_with_logits", "pos_weight", pos_weight)
    return _apply(fns.BinaryCrossEntropyWithLogits, input, target, weight, pos_weight, reduction)
