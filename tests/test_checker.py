"""check_function: its report, its robustness against Functions that misbehave, every nnbasics op
through it (custom and fused), the exercises and the custom_op example."""
import functools
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.autograd import Function

import nnbasics.functional as F
from nnbasics.functional import IMPLS
from nnbasics.testing import CHECKS, OPS, assert_function_ok, check_function

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICK = {}  # the default compile backend, aot_trace (tests/test_check.py runs aot_eager)


def _x(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


# --------------------------------------------------------------------------- every nnbasics op

def _sample(op):
    """One small sample per op: smooth, not empty, and for dropout an actual drop probability."""
    for s in op.samples("cpu", torch.float64, True):
        if s.smooth and s.args[0].numel() > 0 and (not op.random or s.kwargs.get("p") not in (0.0, 1.0)):
            return s
    raise AssertionError(f"{op.name}: no usable sample")


@functools.cache
def _op_report(name, impl):
    op = next(op for op in OPS if op.name == name)
    s = _sample(op)
    # nnbasics' dropout draws its mask from another random stream than torch's: no reference there.
    reference = None if op.random else op.builtin
    return check_function(op.custom(impl), *s.args, kwargs=s.kwargs, reference=reference,
                          seed=0 if op.random else None, **QUICK)


def _op_cases():
    for op in OPS:
        for impl in IMPLS:
            for check in CHECKS:
                yield pytest.param(op.name, impl, check, id=f"{op.name}-{impl}-{check}")


@pytest.mark.parametrize("name, impl, check", list(_op_cases()))
def test_every_nnbasics_op_passes_every_check(name, impl, check):
    result = _op_report(name, impl).results[check]
    assert result.status != "fail", f"{name} ({impl}): {result}"


def test_the_ops_reports_skip_only_what_does_not_apply():
    """Every nnbasics op defines a jvp and is differentiable twice: nothing is skipped but the
    reference of dropout, whose masks come from another random stream than torch's, and opcheck (they are
    autograd.Functions, not custom ops); and nothing warns."""
    for op in OPS:
        for impl in IMPLS:
            skipped = [n for n, r in _op_report(op.name, impl).results.items() if r.status == "skip"]
            expected = (["reference"] if op.random else []) + ["opcheck"]  # not custom ops
            assert skipped == expected, (op.name, impl, skipped)
            assert _op_report(op.name, impl).warned == [], (op.name, impl, str(_op_report(op.name, impl)))


# --------------------------------------------------------------------------- the report

class Double(Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_y):
        return grad_y * 2


def test_report_has_one_line_per_check_and_a_dict_for_json():
    report = check_function(Double, _x(3, 4), reference=lambda x: x * 2, **QUICK)
    lines = str(report).splitlines()
    assert lines[0].startswith("check_function(Double): 13 passed, 0 warned, 0 failed, 2 skipped")
    assert [line.split()[1] for line in lines[1:]] == list(CHECKS)
    assert report.ok and report.results["forward_ad"].status == "skip"
    as_dict = report.to_dict()
    assert as_dict["ok"] and [r["name"] for r in as_dict["results"]] == list(CHECKS)


def test_assert_function_ok_raises_with_the_report():
    class Wrong(Double):
        @staticmethod
        def backward(ctx, grad_y):
            return grad_y * 3

    assert_function_ok(Double, _x(3), checks=["gradcheck"])
    with pytest.raises(AssertionError, match="FAIL  gradcheck"):
        assert_function_ok(Wrong, _x(3), checks=["gradcheck", "ctx_tensors"])


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(ValueError, match="no sample input requires grad"):
        check_function(Double, torch.randn(3))
    with pytest.raises(ValueError, match=r"unknown check\(s\) \['gradchek'\]"):
        check_function(Double, _x(3), checks=["gradchek"])
    with pytest.raises(TypeError, match="neither an autograd.Function subclass nor callable"):
        check_function(42, _x(3))


def test_sample_inputs_are_left_untouched():
    x = _x(3, 4)
    before = x.detach().clone()
    check_function(Double, x, checks=["gradcheck", "mutation", "leak"])
    assert torch.equal(x.detach(), before) and x.grad is None and x.dtype == torch.float64


# --------------------------------------------------------------------------- never hangs, never crashes

class Raises(Double):
    @staticmethod
    def forward(x):
        raise RuntimeError("forward is broken")


class RaisesInBackward(Double):
    @staticmethod
    def backward(ctx, grad_y):
        raise ValueError("backward is broken")


class TooManyGrads(Double):
    @staticmethod
    def backward(ctx, grad_y):
        return grad_y * 2, grad_y


class ReturnsNumber(Double):
    @staticmethod
    def forward(x):
        return 3.0


class BackwardReturnsString(Double):
    @staticmethod
    def backward(ctx, grad_y):
        return "gradient"


class Hangs(Double):
    @staticmethod
    def forward(x):
        while True:
            pass


@pytest.mark.parametrize("fn, text", [
    (Raises, "forward is broken"),
    (RaisesInBackward, "backward is broken"),
    (ReturnsNumber, "returned float"),
    (BackwardReturnsString, "str"),
], ids=["raises", "raises in backward", "returns a number", "backward returns a string"])
def test_a_misbehaving_function_fails_checks_with_its_own_text(fn, text):
    report = check_function(fn, _x(3, 4), **QUICK)
    assert not report.ok
    assert len(report.failed) == 1, str(report)
    found = report.results[report.failed[0]]
    assert text in found.message + found.detail, str(report)
    for r in report.results.values():
        assert r.status in ("pass", "warn", "fail", "skip") and "\n" not in r.message
    # One fault, one line: the rest is blocked by it.
    assert all(r.message.startswith("blocked by") for r in report.results.values() if r.status == "skip"
               and "jvp" not in r.message and "custom op" not in r.message), str(report)


def test_the_wrong_number_of_gradients_is_named_by_grad_metadata_alone():
    report = check_function(TooManyGrads, _x(3), **QUICK)
    assert report.failed == ["grad_metadata"], str(report)
    assert "returned 2 value(s) for 1 forward input(s)" in report.results["grad_metadata"].message
    assert report.results["gradcheck"].message.startswith("blocked by grad_metadata")


class TrailingNones(Double):
    @staticmethod
    def backward(ctx, grad_y):
        return grad_y * 2, None, None  # autograd accepts extra trailing Nones


def test_trailing_nones_are_accepted():
    assert check_function(TrailingNones, _x(3), checks=["grad_metadata", "gradcheck"]).results["grad_metadata"].status == "pass"


def test_a_hanging_function_is_stopped_once_and_blocks_the_rest():
    report = check_function(Hangs, _x(3), timeout=0.5)
    assert report.failed == ["gradcheck"] and "timed out after 0.5 s" in report.results["gradcheck"].message
    assert all(r.status == "skip" for n, r in report.results.items() if n != "gradcheck")


# --------------------------------------------------------------------------- exercises and custom_op

def _exercise(name, folder="exercises"):
    path = REPO_ROOT / "docs" / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Dynamo looks a Function's module up by name
    spec.loader.exec_module(module)
    return module


def _solve(cls, backward):
    return type(cls.__name__, (cls,), {"backward": staticmethod(backward)})


def _linear_backward(ctx, g):
    x, w = ctx.saved_tensors
    nx, nw, nb = ctx.needs_input_grad
    return g @ w if nx else None, g.t() @ x if nw else None, g.sum(0) if nb else None


def _ce_backward(ctx, g):
    x, t = ctx.saved_tensors
    p = torch.softmax(x, dim=-1)
    return g * (p - torch.nn.functional.one_hot(t, p.shape[-1]).to(p.dtype)) / p.shape[0], None


SOLUTIONS = {  # (exercise, its Function, a solution of the backward, the nnbasics op that answers it)
    "sigmoid": ("Sigmoid", lambda ctx, g: g * ctx.saved_tensors[0] * (1 - ctx.saved_tensors[0]), F.sigmoid),
    "tanh": ("Tanh", lambda ctx, g: g * (1 - ctx.saved_tensors[0] ** 2), F.tanh),
    "linear": ("Linear", _linear_backward, F.linear),
    "softmax_cross_entropy": ("SoftmaxCrossEntropy", _ce_backward, F.cross_entropy),
}


@pytest.mark.parametrize("name", list(SOLUTIONS))
def test_exercises_fail_until_solved_and_pass_once_solved(name):
    module = _exercise(name)
    cls_name, backward, answer = SOLUTIONS[name]
    skeleton = getattr(module, cls_name)
    unsolved = check_function(skeleton, *module.sample_inputs(), reference=module.reference, checks=["gradcheck"])
    assert "NotImplementedError: write" in unsolved.results["gradcheck"].message
    solved = _solve(skeleton, backward)
    report = check_function(solved, *module.sample_inputs(), reference=module.reference, **QUICK)
    # The linear answer's backward multiplies a bfloat16 grad_output by a float32 weight when forward ran under
    # autocast: it raises there, a limitation (a warning naming custom_fwd/custom_bwd), not a defect.
    limited = ["forward_ad", "autocast", "opcheck"] if name == "linear" else ["forward_ad", "opcheck"]
    assert report.ok and [n for n, r in report.results.items() if r.status != "pass"] == limited, str(report)
    if name == "linear":
        assert "custom_bwd" in report.results["autocast"].message, str(report)
    assert check_function(answer, *module.sample_inputs(), reference=module.reference,
                          checks=["gradcheck", "reference"]).ok


def test_custom_op_passes_opcheck_and_the_checker_shows_what_torch_func_lacks():
    from nnbasics.examples.custom_op import sigmoid

    for dtype in (torch.float64, torch.float32):
        x = torch.randn(4, 5, dtype=dtype, requires_grad=True)
        result = torch.library.opcheck(torch.ops.nnbasics.sigmoid.default, (x,))
        assert set(result.values()) == {"SUCCESS"}, result
    report = check_function(sigmoid, _x(4, 5), reference=torch.sigmoid, **QUICK)
    # torch.func.grad cannot go through a custom_op's registered autograd (torch 2.13): a limitation, a warning.
    message = report.results["torch_func"].message
    assert report.ok and report.warned == ["torch_func"], str(report)
    assert "torch.func.grad refuses it" in message and "custom_op" in message, str(report)
    assert report.results["opcheck"].status == "pass", str(report)


def test_the_worked_example_of_the_docs_goes_from_two_failures_to_none():
    """docs/checker.md shows these two reports; the findings it walks through must stay true."""
    first = _exercise("softplus_first_attempt", "examples")
    report = check_function(first.Softplus, *first.sample_inputs(), reference=first.reference, **QUICK)
    assert report.failed == ["mutation", "reference"] and report.warned == ["ctx_tensors"], str(report)
    assert report.results["grad_layouts"].message.startswith("blocked by mutation")
    assert "at large inputs" in report.results["reference"].message
    fixed = _exercise("softplus", "examples")
    report = check_function(fixed.Softplus, *fixed.sample_inputs(), reference=fixed.reference, **QUICK)
    assert report.ok and [n for n, r in report.results.items() if r.status != "pass"] == ["forward_ad", "opcheck"], str(report)


def test_a_compile_refusal_names_a_reason_even_when_the_headline_is_empty():
    from nnbasics.testing.checks.transforms import _compile_refusal

    exc = RuntimeError("backend='inductor' raised:\n\nLoweringException: AssertionError: sizes differ\n"
                       "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace\n")
    message = _compile_refusal(exc, set())
    assert "LoweringException: AssertionError: sizes differ" in message and "a limitation, eager works" in message
