"""Two galleries. First, deliberately broken variants of one sigmoid, one per finding: each is caught by
the check named for it, and only by it (the checks it would break too are skipped, "blocked by" it),
as a fail for a defect and a warn for a limitation. Second, tests/checker_gallery.py: Functions in the
styles and with the faults of public code; no sound one gets a fail, each broken one exactly one."""
import checker_gallery as wild
import pytest
import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from nnbasics.testing import CHECKS, check_function

OPTIONS = {"timeout": 120}  # the default compile backend, aot_trace: Dynamo and AOTAutograd, no code generation


# --------------------------------------------------------------------------- correct Functions

class Sigmoid(Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return grad_y * y * (1 - y)

    @staticmethod
    def jvp(ctx, x_t):
        (y,) = ctx.saved_tensors
        return x_t * y * (1 - y)


def compilable(fn):
    """The twin without jvp that torch.compile can trace (Dynamo refuses a custom jvp)."""
    return type(fn.__name__, (fn,), {"jvp": Function.jvp})


def applying(fn):
    twin = compilable(fn)

    def call(*args):
        return (twin if torch.compiler.is_compiling() else fn).apply(*args)

    call.__qualname__ = fn.__name__
    return call


sigmoid = applying(Sigmoid)


class Mul(Function):
    """y = x * w elementwise: each input's gradient needs only the other."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w):
        return x * w

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w = inputs
        needs_x, needs_w = ctx.needs_input_grad
        ctx.save_for_backward(x if needs_w else None, w if needs_x else None)

    @staticmethod
    def backward(ctx, grad_y):
        x, w = ctx.saved_tensors
        return (grad_y * w if ctx.needs_input_grad[0] else None, grad_y * x if ctx.needs_input_grad[1] else None)


def _x(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def _pair():
    return _x(4, 5), _x(4, 5)


def test_a_correct_function_passes_every_check():
    report = check_function(sigmoid, _x(4, 5), reference=torch.sigmoid, **OPTIONS)
    assert [r.status for r in report.results.values()] == ["pass"] * (len(CHECKS) - 1) + ["skip"], str(report)


def test_a_correct_function_of_two_inputs_without_jvp_passes_the_rest():
    report = check_function(Mul, *_pair(), reference=torch.mul, **OPTIONS)
    assert report.ok, str(report)
    assert [name for name, r in report.results.items() if r.status != "pass"] == ["forward_ad", "opcheck"], str(report)


# --------------------------------------------------------------------------- one fault each

def sigmoid_variant(name, backward=None, jvp=None, setup_context=None, **extra):
    """Sigmoid with one piece replaced."""
    body = dict(extra)
    if backward:
        body["backward"] = staticmethod(backward)
    if jvp:
        body["jvp"] = staticmethod(jvp)
    if setup_context:
        body["setup_context"] = staticmethod(setup_context)
    return type(name, (Sigmoid,), body)


def _y(ctx):
    return ctx.saved_tensors[0]


WrongDerivative = sigmoid_variant("WrongDerivative", backward=lambda ctx, g: g * _y(ctx))
DetachedBackward = sigmoid_variant("DetachedBackward", backward=lambda ctx, g: g * _y(ctx).detach() * (1 - _y(ctx).detach()))
WrongJvp = sigmoid_variant("WrongJvp", jvp=lambda ctx, t: t * _y(ctx))
NoVmapRule = sigmoid_variant("NoVmapRule", generate_vmap_rule=False)
AssumesContiguousGrad = sigmoid_variant(
    "AssumesContiguousGrad", backward=lambda ctx, g: g.as_strided(_y(ctx).shape, _y(ctx).stride()) * _y(ctx) * (1 - _y(ctx)))
InPlaceGradOutput = sigmoid_variant("InPlaceGradOutput", backward=lambda ctx, g: g.mul_(_y(ctx) * (1 - _y(ctx))))


def _keep_input_on_ctx(ctx, inputs, output):
    ctx.x = inputs[0]
    ctx.save_for_forward(output)


def _keep_intermediate_on_ctx(ctx, inputs, output):
    ctx.d = output * (1 - output)  # computed outside autograd's view: a constant to double backward
    ctx.save_for_forward(output)


def _keep_output_on_ctx(ctx, inputs, output):
    ctx.y = output  # a reference cycle: output -> its grad_fn (this ctx) -> output
    ctx.save_for_forward(output)


CtxInput = sigmoid_variant("CtxInput", setup_context=_keep_input_on_ctx, backward=lambda ctx, g: g * torch.sigmoid(ctx.x) * (1 - torch.sigmoid(ctx.x)))
CtxIntermediate = sigmoid_variant("CtxIntermediate", setup_context=_keep_intermediate_on_ctx, backward=lambda ctx, g: g * ctx.d)
CtxOutput = sigmoid_variant("CtxOutput", setup_context=_keep_output_on_ctx, backward=lambda ctx, g: g * ctx.y * (1 - ctx.y))

DetachedForward = sigmoid_variant("DetachedForward", forward=staticmethod(lambda x: torch.sigmoid(x.detach())))


class MatVec(Mul):
    """y = x @ w (Mul's setup_context), written without custom_fwd/custom_bwd: under autocast forward returns
    bfloat16 and backward, run after the autocast block, multiplies that bfloat16 gradient by the float32 w."""

    @staticmethod
    def forward(x, w):
        return x @ w

    @staticmethod
    def backward(ctx, grad_y):
        x, w = ctx.saved_tensors
        needs_x, needs_w = ctx.needs_input_grad
        return grad_y @ w.mT if needs_x else None, x.mT @ grad_y if needs_w else None


_CACHE = []


class CachesOutputs(Sigmoid):
    @staticmethod
    def forward(x):
        y = torch.sigmoid(x)
        _CACHE.append(y)  # a memo that is never emptied
        return y


class OnceDifferentiable(Sigmoid):
    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return grad_y * y * (1 - y)


class OldStyle(Function):
    """forward(ctx, ...) without setup_context: fine for autograd, refused by torch.func."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return grad_y * y * (1 - y)


class CleansInputInPlace(Sigmoid):
    @staticmethod
    def forward(x):
        return torch.sigmoid(x.nan_to_num_())  # modifies the caller's tensor, without mark_dirty


class BranchesOnValues(Sigmoid):
    @staticmethod
    def forward(x):
        if bool((x > 0).all()):  # Python control flow on tensor values: a graph break
            return torch.ones_like(x)
        return torch.sigmoid(x)


class AddBias(Function):
    """y = x + b, b broadcast over rows; its backward returns b's gradient as (1, n), not (n,)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, b):
        return x + b

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad_y):
        needs_x, needs_b = ctx.needs_input_grad
        return grad_y if needs_x else None, grad_y.sum(0, keepdim=True) if needs_b else None


class Float32Gradient(Sigmoid):
    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return (grad_y * y * (1 - y)).float()


class AlwaysBothGrads(Mul):
    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad_y):
        x, w = ctx.saved_tensors
        return grad_y * w, grad_y * x


class SavesBoth(Mul):
    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)


class NaiveSoftmax(Function):
    """exp(x) / Σ exp(x): right, until exp overflows at large inputs."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        e = x.exp()
        return e / e.sum(-1, keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return y * (grad_y - (grad_y * y).sum(-1, keepdim=True))


def _softmax(x):
    return torch.softmax(x, -1)


def _one():
    return (_x(4, 5),)


# (fault, function, inputs, reference, {each check that must fail: words its message must contain},
#  {each check that must warn: words}); every other check passes or skips.
GALLERY = [
    ("wrong derivative", applying(WrongDerivative), _one, None, {"gradcheck": ["finite differences", "a term is missing: dy/dx is y(1 - y), yours looks like y "]}, {}),
    ("backward not differentiable", applying(DetachedBackward), _one, None,
     {"gradgradcheck": ["second derivatives", ".detach()"]}, {}),
    ("wrong jvp", applying(WrongJvp), _one, None, {"forward_ad": ["jvp disagrees", "tangent"]}, {}),
    ("no setup_context", OldStyle, _one, None, {}, {"torch_func": ["setup_context", "a limitation"]}),
    ("no vmap rule", applying(NoVmapRule), _one, None, {}, {"torch_func": ["generate_vmap_rule"]}),
    ("grad_output assumed contiguous", applying(AssumesContiguousGrad), _one, None, {"grad_layouts": ["layout", "as_strided"]}, {}),
    ("gradient of a broadcast shape", AddBias, lambda: (_x(4, 5), _x(5)), None, {}, {"grad_metadata": ["shape (1, 5)", "sum_to_size"]}),
    # Rounded to float32: the gradient lost precision; second derivatives are blocked by it.
    ("gradient of the wrong dtype", applying(Float32Gradient), _one, None, {"grad_metadata": ["float32", "cast"]}, {}),
    ("needs_input_grad ignored", AlwaysBothGrads, _pair, None, {}, {"needs_input_grad": ["needs_input_grad[1] is False", "return None"]}),
    ("saves what only another input needs", SavesBoth, _pair, None, {}, {"needs_input_grad": ["saved tensor #", "save each tensor only"]}),
    ("input kept on ctx", applying(CtxInput), _one, None, {}, {"ctx_tensors": ["ctx.x", "an input", "save_for_backward"]}),
    # Double backward takes ctx.d for a constant: gradgradcheck is blocked by ctx_tensors, one line.
    ("intermediate kept on ctx", applying(CtxIntermediate), _one, None,
     {"ctx_tensors": ["ctx.d", "intermediate", "double backward"]}, {}),
    # The cycle is the consequence of ctx.y: the leak check is blocked by ctx_tensors.
    ("output kept on ctx: a cycle", applying(CtxOutput), _one, None, {"ctx_tensors": ["ctx.y", "save_for_backward"]}, {}),
    ("outputs kept in a global", applying(CachesOutputs), _one, None, {"leak": ["gc.collect()", "global cache"]}, {}),
    ("input modified in forward", applying(CleansInputInPlace), _one, None, {"mutation": ["mark_dirty", "in place"]}, {}),
    # Written in place, backward also fails for an expanded grad_output and cannot be differentiated again: those
    # checks are blocked by mutation.
    ("grad_output modified in backward", applying(InPlaceGradOutput), _one, None, {"mutation": ["grad_output 0", "grad * d"]}, {}),
    ("custom jvp under torch.compile", Sigmoid, _one, None, {}, {"compile": ["jvp", "is_compiling"]}),
    ("graph break", applying(BranchesOnValues), _one, None, {},
     {"compile": ["fullgraph", "torch.where", "graph break"], "torch_func": ["data-dependent", "torch.where"]}),
    # Dynamo inlines forward under torch.compile(torch.func.grad): the detach makes the compiled gradient zero.
    ("x.detach() in forward", applying(DetachedForward), _one, None, {"compile_func": ["torch.func.grad", ".detach()"]}, {}),
    ("no custom_fwd/custom_bwd", MatVec, lambda: (_x(4, 5), _x(5, 3)), torch.matmul, {},
     {"autocast": ["same dtype", "custom_bwd"]}),
    ("overflow at large inputs", NaiveSoftmax, lambda: (_x(3, 6),), _softmax, {"reference": ["large inputs", "subtract the max"]}, {}),
]


@pytest.mark.parametrize("fault, fn, inputs, reference, failing, warning", GALLERY, ids=[g[0] for g in GALLERY])
def test_each_fault_is_caught_by_its_check(fault, fn, inputs, reference, failing, warning):
    report = check_function(fn, *inputs(), reference=reference, **OPTIONS)
    assert set(report.failed) == set(failing) and set(report.warned) == set(warning), str(report)
    for name, words in {**failing, **warning}.items():
        message = report.results[name].message
        for word in words:
            assert word in message, f"{name}: {message!r} lacks {word!r}"


def test_every_check_has_a_finding_in_the_gallery():
    found = set().union(*(set(g[4]) | set(g[5]) for g in GALLERY)) | {"opcheck"}  # opcheck: tests/test_checker.py
    assert found == set(CHECKS)


def test_once_differentiable_is_reported_as_such_not_failed():
    report = check_function(applying(OnceDifferentiable), _x(4, 5), reference=torch.sigmoid, **OPTIONS)
    assert report.ok, str(report)
    result = report.results["gradgradcheck"]
    assert result.status == "skip" and "once_differentiable" in result.message


def test_no_jvp_is_a_skip_saying_what_is_unavailable():
    result = check_function(NaiveSoftmax, _x(3, 4), checks=["forward_ad"]).results["forward_ad"]
    assert result.status == "skip" and "NaiveSoftmax" in result.message and "torch.func.jvp" in result.message


def test_strict_fails_on_a_warning():
    report = check_function(OldStyle, _x(4, 5), checks=["gradcheck", "torch_func"], strict=True)
    assert report.failed == [] and report.warned == ["torch_func"] and not report.ok
    assert "strict" in str(report).splitlines()[0] and report.to_dict()["ok"] is False


# --------------------------------------------------------------------------- the gallery of the wild

WILD = wild.GALLERY


@pytest.mark.parametrize("entry", WILD, ids=[e[0] for e in WILD])
def test_the_wild(entry):
    """A sound Function gets no fail; a broken one fails exactly the check named for its fault, as one line."""
    report = wild.run(entry)
    expected = entry[4]
    assert report.failed == ([expected] if expected else []), str(report)
    for r in report.results.values():
        assert "\n" not in r.message
        if r.status == "skip" and r.message.startswith("blocked by"):
            assert expected and r.message.startswith(f"blocked by {expected}"), str(report)


def test_the_wild_is_half_sound_half_broken_and_big_enough():
    sound = [e for e in WILD if e[4] is None]
    assert len(WILD) >= 25 and abs(2 * len(sound) - len(WILD)) <= 1


def test_the_by_design_gradients_say_so():
    report = wild.run(next(e for e in WILD if e[1] is wild.sound.RoundSTE))
    assert report.results["gradcheck"].status == "skip" and "by design" in report.results["gradcheck"].message
    assert "gradients not compared" in report.results["reference"].message
    undeclared = check_function(wild.sound.RoundSTE, _x(4, 5), checks=["gradcheck"])
    assert undeclared.failed == ["gradcheck"] and "true_gradient=False" in undeclared.results["gradcheck"].message


@pytest.mark.parametrize("entry, words", [
    ("grad_output forgotten", ["does not change when grad_output doubles", "expected ["]),
    ("mean without 1/N", ["times 4 (a size of the inputs: a missing 1/4"]),
    ("weight gradient transposed", ["transpose"]),
    ("gradients swapped", ["input 0's gradient is input 1's gradient"]),
    ("None saved, then read", ["saved as None because ctx.needs_input_grad"]),
])
def test_specific_diagnoses(entry, words):
    report = wild.run(next(e for e in WILD if e[0] == entry))
    message = report.results[report.failed[0]].message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("entry, check, status, words", [
    ("random forward (reparameterised sample)", "gradcheck", "pass", ["draws random numbers", "torch.manual_seed(0)"]),
    ("NumPy noise in forward", "gradcheck", "pass", ["draws random numbers", "NumPy's and Python's generators"]),
    ("forward in float32 only", "gradcheck", "warn", ["refuses float64", "runs in float32"]),
    ("safe norm: regularised only at tiny inputs", "reference", "warn", ["only at the checker's scaled inputs", "x1e-3"]),
    ("complex linear scan", "gradcheck", "pass", ["complex128"]),
    ("int64 index input kept on ctx", "ctx_tensors", "warn", ["an input", "save_for_backward"]),
])
def test_what_is_no_defect_says_what_it_did(entry, check, status, words):
    """The classes a round on unseen code found judged too harshly: each says what it did instead of failing."""
    result = wild.run(next(e for e in WILD if e[0] == entry)).results[check]
    assert result.status == status, str(result)
    for word in words:
        assert word in result.message, result.message
