"""The private torch functions the fast path uses, kept here so there is one place to look.

None has a public equivalent, and the textbook (``nnbasics.ops``) uses none of them.
``tests/test_structure.py`` fails if one disappears (CI runs it on the pinned torch and on the
newest release pip resolves); if a future torch drops one, the fallbacks below keep the fast path
correct, only slower.

- ``has_storage(t)``: does ``t`` own memory, i.e. is it neither a ``torch.func`` wrapper nor a
  tensor of the legacy vmap that ``gradcheck(check_batched_grad=True)`` uses? Only such tensors
  are handed to compiled kernels and bit tricks. Fallback: ``untyped_storage()`` raises for them.
- ``FastApply``: a Function whose ``apply`` skips the Python preamble of
  ``torch.autograd.Function.apply``, which binds the arguments to ``forward``'s signature with
  ``inspect.signature`` on every call although nnbasics passes all of them positionally: 9 µs for
  a 1-argument Function, 30 µs for the 6 of ``CrossEntropy`` (``python -m benchmarks.overhead``),
  on steps where the op itself costs tens of µs. It calls the C++ ``apply``
  (``torch._C._FunctionBase``), as the preamble ends up doing, whenever no ``torch.func`` transform
  is active; under one, and while ``torch.compile`` traces (Dynamo intercepts ``apply`` by name),
  it is the public ``apply``. Fallback: the public ``apply``.
"""
import torch

_has_storage = getattr(torch._C, "_has_storage", None)
_FunctionBase = getattr(torch._C, "_FunctionBase", None)
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
try:
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers
except ImportError:  # pragma: no cover (a torch without it: take the public path)
    _unwrap_dead_wrappers = None
_FAST_APPLY = None not in (_FunctionBase, _transforms_active, _unwrap_dead_wrappers)


def has_storage(t: torch.Tensor) -> bool:
    if _has_storage is not None:
        return _has_storage(t)
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    return True


class FastApply:
    """Mixin for an autograd Function of the fast path: ``apply`` without the argument binding."""

    @classmethod
    def apply(cls, *args):
        if not _FAST_APPLY or torch.compiler.is_compiling() or _transforms_active():
            return super().apply(*args)
        # What Function.apply does after binding the arguments, when no transform is active.
        return super(torch.autograd.Function, cls).apply(*_unwrap_dead_wrappers(args))
