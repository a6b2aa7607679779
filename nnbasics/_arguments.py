"""Argument checks for ``nnbasics.functional`` (and ``nnbasics.fused.inplace``).

Each check raises the exception type ``torch.nn.functional`` raises for the same mistake, with
a message that names the bad value and says what to do. Checks that read tensor *values*
(class indices in range, probabilities in [0, 1]) are skipped where values cannot be read:
inside ``torch.compile``, inside ``torch.func`` transforms, and on the meta device (which has
shapes and no values).
"""
import warnings

import torch

from .ops._reduction import REDUCTIONS

# torch.func's wrappers have no public test; the one private function this layer uses, with a
# fallback (treat every tensor as readable: a value check inside a transform then raises torch's
# own error). tests/test_structure.py says when a torch drops it.
_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)


def is_transformed(t: torch.Tensor) -> bool:
    """Is ``t`` a wrapper made by a ``torch.func`` transform (vmap, grad, jvp)? Its values cannot be
    read (``.item()``, ``bool(...)`` raise), and in-place Functions are traced differently there."""
    return _is_wrapped is not None and _is_wrapped(t)


def readable(t: torch.Tensor) -> bool:
    """Can we look at the values of ``t`` (not inside torch.compile or a torch.func transform, not on meta)?"""
    return not t.is_meta and not torch.compiler.is_compiling() and not is_transformed(t)


def reduction(size_average, reduce, reduction: str, stacklevel: int = 3) -> str:
    """The reduction to use: ``reduction``, or the one the legacy pair (size_average, reduce)
    stands for, as torch maps it (with torch's deprecation warning)."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
        warnings.warn(
            f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
            stacklevel=stacklevel,
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not a valid value for reduction: use 'none', 'mean' or 'sum'")
    return reduction


def no_grad_for(fn_name: str, arg_name: str, t) -> None:
    if t is not None and t.requires_grad:
        raise RuntimeError(
            f"{fn_name}: {arg_name} requires grad, but the loss is not differentiable with respect to "
            f"{arg_name} (nor is torch.nn.functional.{fn_name}); pass {arg_name}.detach()"
        )


def same_shape(fn_name: str, input: torch.Tensor, target: torch.Tensor) -> None:
    if target.shape != input.shape:
        raise ValueError(
            f"{fn_name}: target of shape {tuple(target.shape)} differs from input of shape "
            f"{tuple(input.shape)}; give the target the input's shape"
        )


def weight_shape(fn_name: str, weight, input: torch.Tensor) -> None:
    if weight is not None and weight.shape != input.shape:
        raise ValueError(f"{fn_name}: weight of shape {tuple(weight.shape)} must have the input's shape {tuple(input.shape)}")


def floating(fn_name: str, input: torch.Tensor) -> None:
    """Floating-point input, for the ops whose built-in has no integer kernel (torch raises
    NotImplementedError, "... not implemented for 'Long'")."""
    if not input.is_floating_point():
        raise NotImplementedError(
            f"{fn_name}: input must be floating point, got {input.dtype} (nor does torch.nn.functional.{fn_name} "
            f"take it); convert with input.float()"
        )


def _first_bad(bad: torch.Tensor) -> tuple:
    return tuple(i.item() for i in bad.nonzero()[0])


# --------------------------------------------------------------------------- layers and activations

def linear(input, weight, bias) -> None:
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


def hardtanh(min_val, max_val) -> None:
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val={min_val} cannot be greater than max_val={max_val}")


def dropout(p) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got p={p}")


def softmax_dim(name: str, input: torch.Tensor, dim, stacklevel: int = 3) -> int:
    """The dimension to normalise along; ``dim=None`` is torch's legacy implicit choice, with its warning."""
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        dim = 0 if input.dim() in (0, 1, 3) else 1
    n = max(input.dim(), 1)
    if not -n <= dim < n:
        raise IndexError(f"{name}: dim={dim} is out of range for an input of shape {tuple(input.shape)}")
    return dim


# --------------------------------------------------------------------------- losses

def _class_dim(input) -> None:
    if input.dim() == 0:  # torch: IndexError, as for any dimension that is not there
        raise IndexError("cross_entropy: input must have a class dimension, got a 0-d tensor")


def class_targets(input, target, ignore_index) -> None:
    """Shape, dtype and range of class-index targets for cross-entropy."""
    floating("cross_entropy", input)  # torch: NotImplementedError from the log_softmax kernel
    _class_dim(input)
    if target.dtype not in (torch.int64, torch.uint8):
        hint = (
            f"probability (soft) targets must have the input's shape {tuple(input.shape)}"
            if target.is_floating_point()
            else "convert with target.long()"
        )
        raise RuntimeError(f"cross_entropy: target must hold class indices as torch.int64, got {target.dtype}; {hint}")
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    if target.shape != expected:
        # torch tells a batch-size mismatch (ValueError) from any other shape (RuntimeError)
        batch_differs = target.dim() >= 1 and (input.shape[0] != target.shape[0] if input.dim() > 1 else True)
        detail = (
            f"the batch sizes differ ({input.shape[0] if input.dim() > 1 else 'unbatched'} vs {target.shape[0]})"
            if batch_differs else "it must be the input's shape without the class dimension (dim 1)"
        )
        raise (ValueError if batch_differs else RuntimeError)(
            f"cross_entropy: input of shape {tuple(input.shape)} needs a target of shape {tuple(expected)}, "
            f"got {tuple(target.shape)}: {detail}"
        )
    n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    if readable(target) and target.numel():
        low, high = torch.aminmax(target)  # one pass; the element-wise search below only on failure
        if 0 <= low.item() and high.item() < n_classes:
            return
        bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
        if bad.any():
            where = _first_bad(bad)
            raise IndexError(
                f"cross_entropy: target value {target[where].item()} at index {where} is outside [0, {n_classes}) "
                f"for input with {n_classes} classes; class indices must be 0..{n_classes - 1} "
                f"(or ignore_index={ignore_index} to skip an element)"
            )


def probability_targets(input, target, ignore_index) -> None:
    """Dtypes and options of a target of class probabilities: one of the input's shape, which is
    how torch tells probabilities from class indices."""
    floating("cross_entropy", input)
    if not target.is_floating_point():
        batch = tuple(input.shape[:1] + input.shape[2:]) if input.dim() > 1 else ()
        raise RuntimeError(
            f"cross_entropy: a target of the input's shape {tuple(input.shape)} holds class probabilities and "
            f"must be floating point, got {target.dtype}; for class indices give a target of shape {batch}, "
            f"for probabilities convert with target.to({input.dtype})"
        )
    _class_dim(input)  # after the target's dtype, in torch's order
    if ignore_index >= 0:
        raise RuntimeError(
            f"cross_entropy: ignore_index={ignore_index} is not supported for probability targets (nor by "
            "torch.nn.functional.cross_entropy): every row has a target. Leave ignore_index at its default; "
            "to leave a row out, use reduction='none' and drop it"
        )


def cross_entropy_options(n_classes, weight, label_smoothing, weight_differentiable=False) -> None:
    """``weight_differentiable``: the loss is differentiable in the class weights (probability
    targets); with class indices it is not, in torch as here.

    A negative ``label_smoothing`` is refused here; torch raises only above 1 and treats a
    negative value as 0 without a word, which hides a mistake."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if weight is not None and weight.shape != (n_classes,):
        raise RuntimeError(f"cross_entropy: weight must have shape ({n_classes},), one per class, got {tuple(weight.shape)}")
    if not weight_differentiable:
        no_grad_for("cross_entropy", "weight", weight)


def probabilities(fn_name: str, input: torch.Tensor) -> None:
    """Every value of ``input`` in [0, 1] (where values can be read)."""
    if readable(input) and input.numel():
        bad = ~((input >= 0) & (input <= 1))
        if bad.any():
            where = _first_bad(bad)
            raise RuntimeError(
                f"{fn_name}: input value {input[where].item()} at index {where} is not a probability in "
                "[0, 1]; apply sigmoid first, or better, use binary_cross_entropy_with_logits on the logits"
            )
