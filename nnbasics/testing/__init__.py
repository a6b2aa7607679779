"""Testing nnbasics' ops, and anyone's autograd Function.

- ``registry``: the op registry ``OPS`` (each op's samples and built-in twin), used by the
  tests, the benchmarks and ``python -m nnbasics.check``;
- ``compare``: ``compare`` a result with PyTorch's, within per-dtype ``tolerances``;
- ``checker``: ``check_function``, the battery of checks any autograd Function can be put
  through (``docs/checker.md``), and ``assert_function_ok`` for pytest;
- ``suite``: ``function_tests``, the checks as one pytest test each in a user's own suite.
"""
from .checker import CheckTimeout, Report, Result, assert_function_ok, check_function, memory_limit, time_limit
from .checks import CHECKS
from .compare import Comparison, compare, tolerances
from .registry import OPS, OPS_BY_NAME, SHAPES, OpInfo, Sample, ce_make, linear_make, run_both
from .suite import function_tests

__all__ = [
    "CHECKS", "CheckTimeout", "OPS", "OPS_BY_NAME", "SHAPES", "Comparison", "OpInfo", "Report", "Result", "Sample",
    "assert_function_ok", "ce_make", "check_function", "compare", "function_tests", "linear_make",
    "memory_limit", "run_both", "time_limit", "tolerances",
]
