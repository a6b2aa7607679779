"""The exercises of docs/exercises/ with a learner's typical broken first attempts: each gets exactly one
failing check, whose line names the mistake (in English, and with --lang pt in Portuguese); the rest is skipped
("blocked by") or passes."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from nnbasics import check
from nnbasics.testing import check_function
from nnbasics.testing.messages import TEMPLATES, language, render, translate

EXERCISES = Path(__file__).resolve().parent.parent / "docs" / "exercises"
QUICK = {"compile_backend": "aot_eager"}


def _exercise(name):
    spec = importlib.util.spec_from_file_location(f"learner_{name}", EXERCISES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Dynamo looks a Function's module up by name
    spec.loader.exec_module(module)
    return module


def _attempt(module, cls_name, backward, setup_context=None):
    body = {"backward": staticmethod(backward)}
    if setup_context:
        body["setup_context"] = staticmethod(setup_context)
    base = getattr(module, cls_name)
    return type(cls_name, (base,), body)


def _linear_all_grads(ctx, g):  # ignores needs_input_grad, reads what setup_context saved as None
    x, w = ctx.saved_tensors
    return g @ w, g.t() @ x, g.sum(0)


def _linear_wrong_dw(ctx, g):
    x, w = ctx.saved_tensors
    nx, nw, nb = ctx.needs_input_grad
    return g @ w if nx else None, x.t() @ g if nw else None, g.sum(0) if nb else None


def _ce(scale=1.0, with_target_none=True):
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        p = torch.softmax(x, dim=-1)
        dx = g * (p - torch.nn.functional.one_hot(t, p.shape[-1]).to(p.dtype)) * scale
        return (dx, None) if with_target_none else dx
    return backward


def _saved(ctx):
    return ctx.saved_tensors[0]


def _sigmoid_with_x(ctx, grad_y):  # the course's σ'(x) = σ(x)(1 - σ(x)), but only y was saved
    (y,) = ctx.saved_tensors  # noqa: RUF059 - as the exercise has it
    return grad_y * torch.sigmoid(x) * (1 - torch.sigmoid(x))  # noqa: F821 - the mistake under test


# The course's mistakes that a bare "is wrong" hid: the derivative written at the output y, or a term dropped.
COURSE = [
    ("relu", "ReLU", lambda ctx, g: g * (_saved(ctx) >= 0), "gradcheck",  # the course's "1 for x >= 0", on y
     ["evaluated at the output y instead of the input x", "(y = 0): expected 0, yours 1"]),
    ("tanh", "Tanh", lambda ctx, g: g / torch.cosh(_saved(ctx)) ** 2, "gradcheck",  # the course's 1/cosh², on y
     ["evaluated at the output y instead of the input x"]),
    ("sigmoid", "Sigmoid", lambda ctx, g: g * torch.sigmoid(_saved(ctx)) * (1 - torch.sigmoid(_saved(ctx))),
     "gradcheck", ["evaluated at the output y instead of the input x"]),
    ("tanh", "Tanh", lambda ctx, g: g * (1 - _saved(ctx)), "gradcheck",
     ["a term is missing: dy/dx is 1 - y², yours looks like 1 - y"]),
    ("sigmoid", "Sigmoid", lambda ctx, g: g * _saved(ctx) * (1 + _saved(ctx)), "gradcheck",
     ["a sign inside is wrong: dy/dx is y(1 - y), yours looks like y(1 + y)"]),
    ("sigmoid", "Sigmoid", lambda ctx, g: g * _saved(ctx), "gradcheck",
     ["a term is missing: dy/dx is y(1 - y), yours looks like y"]),
    ("sigmoid", "Sigmoid", _sigmoid_with_x, "gradcheck",
     ["NameError: name 'x' is not defined: only y was saved", "save x in setup_context"]),
]

ATTEMPTS = COURSE + [  # (exercise, Function, its backward, the failing check, words of its message)
    ("sigmoid", "Sigmoid", None, "gradcheck", ["Sigmoid.backward raised NotImplementedError: write"]),
    ("sigmoid", "Sigmoid", lambda ctx, g: ctx.saved_tensors[0] * (1 - ctx.saved_tensors[0]), "gradcheck",
     ["does not change when grad_output doubles", "multiply it by grad_output"]),
    ("sigmoid", "Sigmoid", lambda ctx, g: -g * ctx.saved_tensors[0] * (1 - ctx.saved_tensors[0]), "gradcheck",
     ["times -1 (a sign)"]),
    ("tanh", "Tanh", None, "gradcheck", ["NotImplementedError"]),
    ("tanh", "Tanh", lambda ctx, g: 2 * g * (1 - ctx.saved_tensors[0] ** 2), "gradcheck", ["times 2"]),
    ("tanh", "Tanh", lambda ctx, g: g.mul_(1 - ctx.saved_tensors[0] ** 2), "mutation", ["grad_output 0"]),
    ("linear", "Linear", None, "gradcheck", ["NotImplementedError"]),
    ("linear", "Linear", _linear_wrong_dw, "grad_metadata", ["shape (5, 3) for input 1 of shape (3, 5)", "refuses"]),
    ("linear", "Linear", _linear_all_grads, "needs_input_grad", ["saved as None because ctx.needs_input_grad"]),
    ("softmax_cross_entropy", "SoftmaxCrossEntropy", None, "gradcheck", ["NotImplementedError"]),
    ("softmax_cross_entropy", "SoftmaxCrossEntropy", _ce(), "gradcheck", ["times 4", "missing 1/4"]),
    ("softmax_cross_entropy", "SoftmaxCrossEntropy", _ce(0.25, with_target_none=False), "grad_metadata",
     ["returned 1 value(s) for 2 forward input(s)"]),
]


@pytest.mark.parametrize("name, cls_name, backward, check, words", ATTEMPTS,
                         ids=[f"{a[0]}-{i}" for i, a in enumerate(ATTEMPTS)])
def test_a_broken_first_attempt_gets_one_failure_naming_the_mistake(name, cls_name, backward, check, words):
    module = _exercise(name)
    fn = getattr(module, cls_name) if backward is None else _attempt(module, cls_name, backward)
    report = check_function(fn, *module.sample_inputs(), reference=module.reference, **QUICK)
    assert report.failed == [check], str(report)
    message = report.results[check].message
    for word in words:
        assert word in message, message
    for r in report.results.values():
        assert r.status != "skip" or r.message.startswith(f"blocked by {check}") or "jvp" in r.message \
            or "custom op" in r.message, str(report)


def _report(name, cls_name, backward):
    module = _exercise(name)
    fn = getattr(module, cls_name) if backward is None else _attempt(module, cls_name, backward)
    return check_function(fn, *module.sample_inputs(), reference=module.reference, **QUICK)


_FIXES = [en.split("{")[0] for key, (en, _) in TEMPLATES.items() if key.startswith("fix_")]


@pytest.mark.parametrize("name, cls_name, backward, check, words", COURSE[:-1],
                         ids=[f"{a[0]}-{i}" for i, a in enumerate(COURSE[:-1])])
def test_a_derivative_diagnosis_comes_first_in_short_values_at_named_inputs(name, cls_name, backward, check, words):
    message = _report(name, cls_name, backward).results[check].message
    fix = min(message.find(": " + f) for f in _FIXES if f and ": " + f in message)
    assert 0 < fix <= 160, message
    assert message.index("(gradcheck, against finite differences: ") > fix and "x = " in message[:fix], message


@pytest.mark.parametrize("name, cls_name, backward, check, words", ATTEMPTS,
                         ids=[f"{a[0]}-{i}" for i, a in enumerate(ATTEMPTS)])
def test_every_line_of_a_learners_report_reads_in_portuguese(name, cls_name, backward, check, words):
    report = _report(name, cls_name, backward)
    for r in report.results.values():
        assert translate(r.message, "pt") != r.message, r.message
    failing = translate(report.results[check].message, "pt")
    for english in ("expected", "yours", "is missing", "every other check", "in place", "the right one", "saved as",
                    "you saved", "Jacobian", " the ", " is "):
        assert english not in failing, failing
    assert "reprovadas 1," in render(report, "pt").splitlines()[0]


def test_the_answers_reports_read_in_portuguese():
    for name, cls_name in (("sigmoid", "Sigmoid"), ("linear", "Linear"), ("softmax_cross_entropy", "SoftmaxCrossEntropy")):
        spec = importlib.util.spec_from_file_location(f"answer_{name}", EXERCISES / "answers" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        report = check_function(getattr(module, cls_name), *module.sample_inputs(), reference=module.reference, **QUICK)
        assert report.ok, str(report)
        for r in report.results.values():
            assert translate(r.message, "pt") != r.message, r.message


def test_the_language_comes_from_the_flag_then_the_locale():
    assert language("pt", {}) == "pt" and language("en", {"LANG": "pt_BR.UTF-8"}) == "en"
    assert language(None, {"LANG": "pt_BR.UTF-8"}) == "pt" and language(None, {"LANG": "en_US.UTF-8"}) == "en"
    assert language(None, {"LC_ALL": "C.UTF-8", "LANG": "pt_BR.UTF-8"}) == "en"
    assert language(None, {"LC_MESSAGES": "pt_PT.UTF-8", "LANG": "C"}) == "pt" and language(None, {}) == "en"


@pytest.mark.parametrize("argv, env, words", [
    (["--lang", "pt"], {}, "o gradiente de x não muda quando grad_output dobra"),
    ([], {"LANG": "pt_BR.UTF-8"}, "o gradiente de x não muda quando grad_output dobra"),
    ([], {"LANG": "C.UTF-8"}, "the gradient of x does not change when grad_output doubles"),
])
def test_the_command_line_speaks_the_learners_language(tmp_path, capsys, monkeypatch, argv, env, words):
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    source = (EXERCISES / "sigmoid.py").read_text().replace(
        'raise NotImplementedError(', 'return y * (1 - y)\n        raise NotImplementedError(')
    (tmp_path / "forgot.py").write_text(source)
    assert check.main([f"{tmp_path / 'forgot.py'}:Sigmoid", "--checks", "gradcheck", *argv]) == 1
    out = capsys.readouterr().out
    assert words in out, out
