"""The private torch functions nnbasics uses, kept here so there is one place to look.

None has a public equivalent. ``tests/test_structure.py`` fails if one disappears, and CI runs
it on the pinned torch (2.13.0) and on the newest release pip resolves (2.14.1 on 2026-12-01,
where all are present). If a future torch drops one, the fallbacks below keep nnbasics correct,
only slower or less helpful. The Function checker also reads two private attributes of
autograd graph nodes, where it inspects a user's Function (``nnbasics/testing/target.py``):
``node._input_metadata`` (shape, dtype and device of the gradient each input expects) and
``node._forward_cls`` (the Function a node belongs to); the same test checks those.

- ``is_transformed(t)``: is ``t`` a wrapper made by a ``torch.func`` transform (vmap, grad,
  jvp)? Its values cannot be read (``.item()``, ``bool(...)`` raise), so the argument checks
  that look at values are skipped for it. Fallback: treat every tensor as readable, which
  makes such a check raise torch's own error inside a transform.
- ``has_storage(t)``: does ``t`` own memory, i.e. is it neither a ``torch.func`` wrapper nor a
  tensor of the legacy vmap that ``gradcheck(check_batched_grad=True)`` uses? Only such
  tensors are handed to compiled kernels. Fallback: ``untyped_storage()`` raises for them.
- ``apply_function(fn, *args)``: ``fn.apply(*args)`` without the Python preamble of
  ``torch.autograd.Function.apply``, which binds the arguments to ``forward``'s signature with
  ``inspect.signature`` on every call, although nnbasics always passes all of them
  positionally: 9 µs for a 1-argument Function, 30 µs for the 6 of ``CrossEntropy``
  (measured in ``benchmarks/results/README.md``), on steps where the op itself costs tens of
  µs. It calls the C++ ``apply`` (``torch._C._FunctionBase``), as the preamble ends up doing,
  whenever no ``torch.func`` transform is active; under one it takes the public path, which
  is the one that supports them. Fallback: ``fn.apply``.
"""
import torch

_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
_has_storage = getattr(torch._C, "_has_storage", None)
_FunctionBase = getattr(torch._C, "_FunctionBase", None)
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
try:
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers
except ImportError:  # pragma: no cover (a torch without it: take the public path)
    _unwrap_dead_wrappers = None
_FAST_APPLY = None not in (_FunctionBase, _transforms_active, _unwrap_dead_wrappers)


def is_transformed(t: torch.Tensor) -> bool:
    return _is_wrapped is not None and _is_wrapped(t)


def has_storage(t: torch.Tensor) -> bool:
    if _has_storage is not None:
        return _has_storage(t)
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    return True


def transforms_active() -> bool:
    """Is a ``torch.func`` transform (vmap, grad, jvp, ...) running? Fallback: assume one is."""
    return _transforms_active is None or _transforms_active()


def apply_function(fn, *args):
    """``fn.apply(*args)`` for an autograd Function ``fn`` given every argument of its forward."""
    if not _FAST_APPLY or transforms_active():
        return fn.apply(*args)
    # What Function.apply does after binding the arguments, when no transform is active.
    return super(torch.autograd.Function, fn).apply(*_unwrap_dead_wrappers(args))
