"""Testing nnbasics' ops, and anyone's autograd Function.

- ``registry``: the op registry ``OPS`` (each op's samples and built-in twin), used by the
  tests, the benchmarks and ``python -m nnbasics.check``;
- ``compare``: ``compare`` a result with PyTorch's, within per-dtype ``tolerances``;
- ``checker``: ``check_function``, the battery of checks any autograd Function can be put
  through (``docs/checker.md``), and ``assert_function_ok`` for pytest.
"""
from .compare import Comparison, compare, tolerances
from .registry import OPS, OPS_BY_NAME, SHAPES, OpInfo, Sample, ce_make, linear_make, run_both

__all__ = [
    "OPS", "OPS_BY_NAME", "SHAPES", "Comparison", "OpInfo", "Sample", "ce_make", "compare", "linear_make",
    "run_both", "tolerances",
]
