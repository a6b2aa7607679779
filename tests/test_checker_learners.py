"""The exercises of docs/exercises/ with a learner's typical broken first attempts: each gets exactly one
failing check, whose line names the mistake; the rest is skipped ("blocked by") or passes."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from nnbasics.testing import check_function

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


ATTEMPTS = [  # (exercise, Function, its backward, the failing check, words of its message)
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
