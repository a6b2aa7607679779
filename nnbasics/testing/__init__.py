"""Testing anyone's autograd Function, and nnbasics' ops against PyTorch's.

- ``checker``: ``check_function``, the battery of checks any autograd Function can be put
  through (``docs/checker.md``), and ``assert_function_ok`` for pytest;
- ``suite``: ``function_tests``, the checks as one pytest test each in a user's own suite;
- ``compare``: ``compare`` a result with PyTorch's, within per-dtype ``tolerances``;
- ``registry``: the op registry ``OPS`` (each op's samples and built-in twin) and ``run_both``,
  which runs an op and its twin, used by ``python -m nnbasics.check`` and the tests; the
  benchmarks' size-driven sample makers (``ce_make``, ``linear_make``) are there too.
"""
from .checker import CheckTimeout, Report, Result, assert_function_ok, check_function, memory_limit, time_limit
from .checks import CHECKS
from .compare import Comparison, compare, tolerances
from .registry import OPS, OPS_BY_NAME, run_both
from .suite import function_tests

__all__ = [
    "CHECKS", "CheckTimeout", "OPS", "OPS_BY_NAME", "Comparison", "Report", "Result", "assert_function_ok",
    "check_function", "compare", "function_tests", "memory_limit", "run_both", "time_limit", "tolerances",
]
