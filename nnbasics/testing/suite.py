"""The checks of ``check_function`` as tests of your own pytest suite, one test per check:

    # tests/test_my_function.py
    from nnbasics.testing import function_tests
    test_my_function = function_tests(MyFunction, lambda: (torch.randn(4, 5, dtype=torch.float64,
                                      requires_grad=True),), reference=my_reference)

collects ``test_my_function[gradcheck]``, ``test_my_function[mutation]``, ...: a ``fail`` fails that test with
the check's line (and its detail), a ``skip`` skips it with the reason, a ``warn`` passes with a pytest warning
(fails under ``strict=True``). The Function is checked once, at the first of these tests to run.
"""
import warnings

from .checker import check_function
from .checks import CHECKS


class FunctionCheckWarning(UserWarning):
    """A check found the Function working but limited or wasteful (the message says the cost and the fix)."""


def function_tests(fn, sample_inputs, **options):
    """A pytest test function parametrized over the checks (``options["checks"]``, default all).

    sample_inputs: a callable returning the arguments (called once, when the first test runs), or the
    arguments as a tuple. options: those of ``check_function`` (reference=, kwargs=, strict=, ...)."""
    import pytest  # only the user's test suite needs it

    names = list(options.get("checks") or CHECKS)
    found = {}

    def report():
        if "report" not in found:
            inputs = sample_inputs() if callable(sample_inputs) else sample_inputs
            inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
            found["report"] = check_function(fn, *inputs, **options)
        return found["report"]

    @pytest.mark.parametrize("check", names)
    def test(check):
        result = report().results[check]
        text = str(result) + (f"\n{result.detail}" if result.detail else "")
        if result.status == "fail" or (result.status == "warn" and options.get("strict")):
            pytest.fail(text, pytrace=False)
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status == "warn":
            warnings.warn(FunctionCheckWarning(result.message), stacklevel=1)

    return test
