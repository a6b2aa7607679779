"""nnbasics: neural-network ops with hand-written backward passes, proven against PyTorch.

- ``nnbasics.ops``: the textbook, one ``torch.autograd.Function`` per op in plain public torch,
  its math in its docstring.
- ``nnbasics.functional`` / ``nnbasics.nn``: drop-in twins of ``torch.nn.functional`` / ``torch.nn``.
- ``nnbasics.fused``: the fast path (``impl="fused"``): the same formulas compiled, and every
  speed trick (``docs/fused.md``).
- ``nnbasics.testing``: the op registry and ``compare``, used by the tests and benchmarks; and
  ``check_function``, which puts any autograd Function through every check (``docs/checker.md``).
- ``python -m nnbasics.train``: an MLP on MNIST; ``python -m nnbasics.check``: every op against PyTorch,
  or ``python -m nnbasics.check FILE.py:NAME``: your own Function through every check.

``functional`` and ``nn`` are imported on first use (PEP 562, as torch does for its submodules), so
that ``import nnbasics`` alone does not import torch: the command line's client (``nnbasics.checkserver``)
starts in a few hundredths of a second.
"""
import importlib

__version__ = "0.1.0"
__all__ = ["functional", "nn", "__version__"]
_LAZY = ("functional", "nn")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)  # the import binds it here: asked once
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
