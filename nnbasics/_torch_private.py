"""The two private torch functions nnbasics uses, kept here so there is one place to look.

Neither has a public equivalent (checked against torch 2.13.0, the version the project is
tested with; ``tests/test_structure.py`` fails if either disappears). If a future torch drops
one, the fallbacks below keep nnbasics correct, only slower or less helpful.

- ``is_transformed(t)``: is ``t`` a wrapper made by a ``torch.func`` transform (vmap, grad,
  jvp)? Its values cannot be read (``.item()``, ``bool(...)`` raise), so the argument checks
  that look at values are skipped for it. Fallback: treat every tensor as readable, which
  makes such a check raise torch's own error inside a transform.
- ``has_storage(t)``: does ``t`` own memory, i.e. is it neither a ``torch.func`` wrapper nor a
  tensor of the legacy vmap that ``gradcheck(check_batched_grad=True)`` uses? Only such
  tensors are handed to compiled kernels. Fallback: ``untyped_storage()`` raises for them.
"""
import torch

_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
_has_storage = getattr(torch._C, "_has_storage", None)


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
