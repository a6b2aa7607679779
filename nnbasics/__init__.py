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
"""
from . import functional, nn

__version__ = "0.1.0"
__all__ = ["functional", "nn", "__version__"]
