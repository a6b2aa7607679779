"""Drop-in twins of ``torch.nn.functional``, computed by the hand-written ops.

Every function here has the name, parameters and defaults of its
``torch.nn.functional`` namesake, plus one keyword-only argument, ``impl``:

- ``impl="custom"`` (default): the readable reference in ``nnbasics.ops``;
- ``impl="fused"``: the same formulas compiled into fused loops (``nnbasics.fused``).

This module is the layer between a user and the autograd Functions. It does
what ``torch.nn.functional`` does around its kernels and nothing else:

1. check the arguments, with errors that name the bad value and the fix;
2. reshape (class dimension of N-d cross-entropy, unbatched inputs, ``inplace``);
3. cast for ``torch.autocast`` the way the built-in op is cast (``_apply``).
"""
import warnings

import torch

from .ops._reduction import REDUCTIONS

IMPLS = ("custom", "fused")

__all__ = [
    "linear", "sigmoid", "relu", "cross_entropy", "tanh", "leaky_relu", "hardtanh", "softmax",
    "log_softmax", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "dropout",
]


# --------------------------------------------------------------------------- plumbing

def _function(name: str, impl: str):
    """The autograd Function called ``name`` in the chosen implementation."""
    if impl == "custom":
        from . import ops as module
    elif impl == "fused":
        from . import fused as module
    else:
        raise ValueError(f"impl={impl!r} is not an implementation: use one of {IMPLS}")
    if torch.compiler.is_compiling():
        return module.COMPILABLE[name]  # the twin without jvp, which Dynamo cannot trace
    return getattr(module, name)


# How torch.autocast treats each built-in op, per device type (from PyTorch's
# autocast op lists): "lower" runs in the autocast dtype, "fp32" in float32,
# None in the input's own dtype.
_AUTOCAST = {
    "Linear": {"cpu": "lower", "cuda": "lower", None: "lower"},
    "Softmax": {"cuda": "fp32"},
    "LogSoftmax": {"cuda": "fp32"},
    "CrossEntropy": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "MSELoss": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "BinaryCrossEntropy": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "BinaryCrossEntropyWithLogits": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
}
_AUTOCAST_ELIGIBLE = (torch.float16, torch.bfloat16, torch.float32)


def _apply(name: str, impl: str, device: torch.device, *args):
    """``Function.apply(*args)``, cast first as ``torch.autocast`` would cast the built-in op.

    Inside the Function autocast is switched off: the hand-written math must
    run in the dtype chosen here, not be re-cast op by op (under CUDA autocast
    ``torch.exp`` alone would run in float32 and leak a float32 output).
    """
    fn = _function(name, impl)
    device_type = device.type
    if not torch.is_autocast_enabled(device_type):
        return fn.apply(*args)
    policy = _AUTOCAST.get(name, {}).get(device_type, _AUTOCAST.get(name, {}).get(None))
    if policy is not None:
        dtype = torch.get_autocast_dtype(device_type) if policy == "lower" else torch.float32
        args = tuple(
            a.to(dtype) if isinstance(a, torch.Tensor) and a.dtype in _AUTOCAST_ELIGIBLE else a for a in args
        )
    with torch.autocast(device_type, enabled=False):
        return fn.apply(*args)


def _checkable(t: torch.Tensor) -> bool:
    """Can we look at the values of ``t`` (not inside torch.compile or a torch.func transform)?"""
    if torch.compiler.is_compiling():
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(t)


def _reduction(size_average, reduce, reduction: str) -> str:
    if size_average is not None or reduce is not None:  # the legacy pair, as torch maps it
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
        warnings.warn(
            f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
            stacklevel=3,
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not a valid value for reduction: use 'none', 'mean' or 'sum'")
    return reduction


def _inplace(input: torch.Tensor, out: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``inplace=True`` writes the result into ``input``: same semantics as the built-in,
    autograd included, though it saves no memory here."""
    return input.copy_(out) if inplace else out


def _no_grad_for(fn_name: str, arg_name: str, t):
    if t is not None and t.requires_grad:
        raise RuntimeError(
            f"{fn_name}: {arg_name} requires grad, but the loss is not differentiable with respect to "
            f"{arg_name} (nor is torch.nn.functional.{fn_name}); pass {arg_name}.detach()"
        )


def _same_shape(fn_name: str, input: torch.Tensor, target: torch.Tensor):
    if target.shape != input.shape:
        raise ValueError(
            f"{fn_name}: target of shape {tuple(target.shape)} differs from input of shape "
            f"{tuple(input.shape)}; give the target the input's shape"
        )


# --------------------------------------------------------------------------- layers

def linear(input, weight, bias=None, *, impl="custom"):
    """y = x Wᵀ + b. input (*, in), weight (out, in), bias (out,) → (*, out)."""
    if weight.dim() != 2:
        raise RuntimeError(f"linear: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if input.dim() == 0 or input.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"linear: input of shape {tuple(input.shape)} has {input.shape[-1] if input.dim() else 'no'} features "
            f"in its last dimension, but weight of shape {tuple(weight.shape)} expects in_features={weight.shape[1]}; "
            f"reshape the input to (*, {weight.shape[1]}) or make the layer with in_features="
            f"{input.shape[-1] if input.dim() else '...'}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RuntimeError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return _apply("Linear", impl, input.device, input, weight, bias)


# --------------------------------------------------------------------------- activations

def sigmoid(input, *, impl="custom"):
    """σ(x) = 1 / (1 + e^(-x)), elementwise."""
    return _apply("Sigmoid", impl, input.device, input)


def tanh(input, *, impl="custom"):
    """tanh(x), elementwise."""
    return _apply("Tanh", impl, input.device, input)


def relu(input, inplace=False, *, impl="custom"):
    """max(x, 0), elementwise."""
    out, _mask = _apply("ReLU", impl, input.device, input)
    return _inplace(input, out, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False, *, impl="custom"):
    """x if x > 0 else negative_slope · x, elementwise."""
    out, _mask = _apply("LeakyReLU", impl, input.device, input, float(negative_slope))
    return _inplace(input, out, inplace)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False, *, impl="custom"):
    """clamp(x, min_val, max_val), elementwise."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val={min_val} cannot be greater than max_val={max_val}")
    out, _mask = _apply("Hardtanh", impl, input.device, input, float(min_val), float(max_val))
    return _inplace(input, out, inplace)


def dropout(input, p=0.5, training=True, inplace=False, *, impl="custom"):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got p={p}")
    if not training:
        return input
    out, _mask = _apply("Dropout", impl, input.device, input, float(p))
    return _inplace(input, out, inplace)


def _softmax_dim(name: str, input: torch.Tensor, dim):
    if dim is None:  # torch's legacy implicit choice, with its warning
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
            stacklevel=3,
        )
        dim = 0 if input.dim() in (0, 1, 3) else 1
    n = max(input.dim(), 1)
    if not -n <= dim < n:
        raise IndexError(f"{name}: dim={dim} is out of range for an input of shape {tuple(input.shape)}")
    return dim


def softmax(input, dim=None, _stacklevel=3, dtype=None, *, impl="custom"):
    """e^(x_i) / Σ_j e^(x_j) along dim."""
    dim = _softmax_dim("softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    return _apply("Softmax", impl, input.device, input, dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None, *, impl="custom"):
    """x_i - log Σ_j e^(x_j) along dim."""
    dim = _softmax_dim("log_softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    return _apply("LogSoftmax", impl, input.device, input, dim)


# --------------------------------------------------------------------------- losses

def _check_class_targets(input, target, ignore_index):
    """Shape, dtype and range of class-index targets; messages name the offending value."""
    if not input.is_floating_point():
        raise RuntimeError(f"cross_entropy: input must be floating point (logits), got {input.dtype}")
    if target.dtype not in (torch.int64, torch.uint8):
        hint = (
            "probability (soft) targets are not supported here; pass class indices"
            if target.is_floating_point()
            else "convert with target.long()"
        )
        raise RuntimeError(f"cross_entropy: target must hold class indices as torch.int64, got {target.dtype}; {hint}")
    if input.dim() == 0:
        raise RuntimeError("cross_entropy: input must have a class dimension, got a 0-d tensor")
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    if target.shape != expected:
        detail = (
            f"the batch sizes differ ({input.shape[0]} vs {target.shape[0]})"
            if input.dim() > 1 and target.dim() >= 1 and input.shape[0] != target.shape[0]
            else "it must be the input's shape without the class dimension (dim 1)"
        )
        raise RuntimeError(
            f"cross_entropy: input of shape {tuple(input.shape)} needs a target of shape {tuple(expected)}, "
            f"got {tuple(target.shape)}: {detail}"
        )
    n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    if _checkable(target) and target.numel():
        bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
        if bad.any():
            where = tuple(i.item() for i in bad.nonzero()[0])
            raise IndexError(
                f"cross_entropy: target value {target[where].item()} at index {where} is outside [0, {n_classes}) "
                f"for input with {n_classes} classes; class indices must be 0..{n_classes - 1} "
                f"(or ignore_index={ignore_index} to skip an element)"
            )


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
    target (N,) or (N, d1, ...). Returns a scalar, or target's shape for reduction='none'."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_class_targets(input, target, ignore_index)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    if weight is not None and weight.shape != (n_classes,):
        raise RuntimeError(f"cross_entropy: weight must have shape ({n_classes},), one per class, got {tuple(weight.shape)}")
    _no_grad_for("cross_entropy", "weight", weight)
    # The Function sees rows of logits (N', C): move the class dimension last and flatten the rest.
    rows = input.movedim(1, -1).reshape(-1, n_classes) if input.dim() > 1 else input[None]
    loss = _apply(
        "CrossEntropy", impl, input.device,
        rows, target.reshape(-1).long(), weight, int(ignore_index), reduction, float(label_smoothing),
    )
    return loss.reshape(target.shape) if reduction == "none" else loss


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None, *, impl="custom"):
    """Σ w (x - y)², reduced. input, target (and weight): same shape."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
            "This will likely lead to incorrect results due to broadcasting. Please ensure they have the same size.",
            stacklevel=2,
        )
        input, target = torch.broadcast_tensors(input, target)
    if weight is not None and weight.shape != input.shape:
        raise ValueError(f"mse_loss: weight of shape {tuple(weight.shape)} must have the input's shape {tuple(input.shape)}")
    return _apply("MSELoss", impl, input.device, input, target, weight, reduction)


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", *, impl="custom"
):
    """-w (y log p + (1 - y) log(1 - p)), reduced. input p in [0, 1] and target: same shape."""
    reduction = _reduction(size_average, reduce, reduction)
    _same_shape("binary_cross_entropy", input, target)
    _no_grad_for("binary_cross_entropy", "weight", weight)
    if input.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        raise RuntimeError(
            "binary_cross_entropy is unsafe to autocast on CUDA (as is torch.nn.functional.binary_cross_entropy): "
            "use binary_cross_entropy_with_logits on the logits instead of a sigmoid followed by this loss"
        )
    if _checkable(input) and input.numel():
        bad = ~((input >= 0) & (input <= 1))
        if bad.any():
            where = tuple(i.item() for i in bad.nonzero()[0])
            raise RuntimeError(
                f"binary_cross_entropy: input value {input[where].item()} at index {where} is not a probability in "
                "[0, 1]; apply sigmoid first, or better, use binary_cross_entropy_with_logits on the logits"
            )
    return _apply("BinaryCrossEntropy", impl, input.device, input, target, weight, reduction)


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *, impl="custom"
):
    """Binary cross-entropy of σ(input), computed stably from the logits; pos_weight weighs positives."""
    reduction = _reduction(size_average, reduce, reduction)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    _no_grad_for("binary_cross_entropy_with_logits", "weight", weight)
    _no_grad_for("binary_cross_entropy_with_logits", "pos_weight", pos_weight)
    return _apply("BinaryCrossEntropyWithLogits", impl, input.device, input, target, weight, pos_weight, reduction)
