"""The gallery of the wild: autograd Functions written for this project in the styles, and with the faults,
found in public code (the repository, and the issue or pull request where the pattern was reported, beside
each; the code is ours). Half are sound, half broken; ``python tests/checker_gallery.py`` prints the
confusion table docs/checker.md publishes, and tests/test_checker_gallery.py asserts it.

Each entry: (name, Function, sample inputs, check_function options, the one check that must fail or None).
"""
import numpy as np
import torch
from torch.autograd import Function

DOUBLE = torch.float64


def _x(*shape, low=None):
    x = torch.randn(*shape, dtype=DOUBLE)
    if low is not None:
        x = x.abs() + low
    return x.requires_grad_()


# --------------------------------------------------------------------------- sound

class TutorialReLU(Function):
    """pytorch/tutorials, beginner_source/examples_autograd/polynomial_custom_function.py style: forward(ctx, ...)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0).to(grad.dtype)


class DocsExp(Function):
    """pytorch/pytorch docs/source/notes/extending.rst: Exp saving its result."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class DocsLinear(Function):
    """extending.rst's LinearFunction: optional bias, needs_input_grad branches; called without a bias it returns a
    trailing None, and it saves x and w whatever is needed (a warning, not a fault)."""

    @staticmethod
    def forward(ctx, x, w, bias=None):
        ctx.save_for_backward(x, w, bias)
        out = x @ w.t()
        return out + bias if bias is not None else out

    @staticmethod
    def backward(ctx, grad):
        x, w, bias = ctx.saved_tensors
        gx = grad @ w if ctx.needs_input_grad[0] else None
        gw = grad.t() @ x if ctx.needs_input_grad[1] else None
        gb = grad.sum(0) if bias is not None and ctx.needs_input_grad[2] else None
        return gx, gw, gb


class DocsMulConstant(Function):
    """extending.rst's MulConstant: a non-tensor argument kept on ctx, None as its gradient."""

    @staticmethod
    def forward(ctx, x, constant):
        ctx.constant = constant
        return x * constant

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.constant, None


class FuncCube(Function):
    """extending.func.rst's MyCube: setup_context style, two outputs (x³ and its derivative), vmap rule generated."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x ** 3, 3 * x ** 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output[1])

    @staticmethod
    def backward(ctx, grad, grad_dx):
        x, dx = ctx.saved_tensors
        return grad * dx + grad_dx * 6 * x


class NumpyExpInPlace(Function):
    """pytorch/pytorch torch/testing/_internal/autograd_function_db.py's NumpyExp_: NumPy inside, in place, mark_dirty."""

    @staticmethod
    def forward(ctx, x):
        x_np = x.detach().numpy()
        np.exp(x_np, out=x_np)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class TimmSwish(Function):
    """huggingface/pytorch-image-models timm/layers/activations_me.py style: memory-efficient swish, saves x only."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * (s * (1 + x * (1 - s)))


class NewEmptyTensor(Function):
    """facebookresearch/detectron2 detectron2/layers/wrappers.py's _NewEmptyTensorOp: empty tensors, a shape argument."""

    @staticmethod
    def forward(ctx, x, new_shape):
        ctx.shape = x.shape
        return x.new_empty(new_shape)

    @staticmethod
    def backward(ctx, grad):
        return NewEmptyTensor.apply(grad, ctx.shape), None


class RoundSTE(Function):
    """Straight-through rounding, as in InterDigitalInc/CompressAI's quantization and VQ-VAE code: by design."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class GradientReversal(Function):
    """fungtion/DANN's ReverseLayerF (domain adaptation): identity forward, -alpha · grad backward: by design."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.neg() * ctx.alpha, None


class ATanSpike(Function):
    """jeshraghian/snntorch snntorch/surrogate.py (and fangwei123456/spikingjelly): a Heaviside spike with an
    arctan surrogate gradient: by design."""

    @staticmethod
    def forward(ctx, v, alpha=2.0):
        ctx.save_for_backward(v)
        ctx.alpha = alpha
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (torch.pi / 2 * a * v) ** 2), None


class CheckpointLikeDropout(Function):
    """pytorch/pytorch torch/utils/checkpoint.py's CheckpointFunction keeps the RNG state on ctx: a tensor that is
    neither input nor output (a warning: hooks do not see it)."""

    @staticmethod
    def forward(ctx, x):
        ctx.rng_state = torch.get_rng_state()
        return torch.nn.functional.dropout(x, 0.5, training=True)

    @staticmethod
    def backward(ctx, grad):
        now = torch.get_rng_state()
        torch.set_rng_state(ctx.rng_state)
        mask = torch.nn.functional.dropout(torch.ones(grad.shape, dtype=grad.dtype), 0.5, training=True)
        torch.set_rng_state(now)
        return grad * mask


class MaxWithIndex(Function):
    """A row max keeping its int64 argmax on ctx (max-pool style, e.g. open-mmlab/mmcv's ops): not in the graph."""

    @staticmethod
    def forward(ctx, x):
        values, index = x.max(-1)
        ctx.index, ctx.shape = index, x.shape
        return values

    @staticmethod
    def backward(ctx, grad):
        out = grad.new_zeros(ctx.shape)
        return out.scatter(-1, ctx.index.unsqueeze(-1), grad.unsqueeze(-1))


class EntmaxStyleSoftmax(Function):
    """deep-spin/entmax style: forward(ctx, X, dim=-1), a keyword argument, the output saved."""

    @staticmethod
    def forward(ctx, x, dim=-1):
        ctx.dim = dim
        y = torch.softmax(x, dim)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(ctx.dim, keepdim=True)), None


# --------------------------------------------------------------------------- broken

class InPlaceLogitsCE(Function):
    """NVIDIA/Megatron-LM pull 1594 (VocabParallelCrossEntropy), linkedin/Liger-Kernel issue 343: the max is
    subtracted from the caller's logits in place, without mark_dirty."""

    @staticmethod
    def forward(ctx, logits, target):
        logits.sub_(logits.max(-1, keepdim=True).values.detach())
        p = torch.softmax(logits, -1)
        ctx.save_for_backward(p, target)
        return -(p.gather(-1, target[:, None]).log()).mean()

    @staticmethod
    def backward(ctx, grad):
        p, target = ctx.saved_tensors
        onehot = torch.nn.functional.one_hot(target, p.shape[-1]).to(p.dtype)
        return grad * (p - onehot) / p.shape[0], None


class InputOnCtx(Function):
    """dmlc/dgl pull 1060 (tensors in ctx.backward_cache): the input kept as a ctx attribute."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return x.sin()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.x.cos()


class ClosureCycle(Function):
    """pytorch/pytorch issue 25340 (ctx holding the output): here through a closure, which no attribute scan sees."""

    @staticmethod
    def forward(ctx, x):
        y = x.tanh()
        ctx.backward_fn = lambda g: g * (1 - y * y)
        return y

    @staticmethod
    def backward(ctx, grad):
        return ctx.backward_fn(grad)


class ViewGradOutput(Function):
    """NVIDIA/apex pull 1601 and 1573, open-mmlab/mmcv pull 737: grad_output.view(...) assumes a contiguous grad."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        g = grad.view(-1, grad.shape[-1])
        return (g @ w.t()).view(x.shape), x.reshape(-1, x.shape[-1]).t() @ g


class SqueezedGrad(Function):
    """pytorch/pytorch issue 4778 (squeeze of a size-1 dim): the gradient of a (n, 1) scale squeezed to (n,)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x, scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        return grad * scale, (grad * x).sum(1, keepdim=True).squeeze()


class MissingGradient(Function):
    """A backward that returns no gradient for the non-tensor argument (autograd: 'incorrect number of gradients')."""

    @staticmethod
    def forward(ctx, x, power):
        ctx.save_for_backward(x)
        ctx.power = power
        return x ** power

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.power * x ** (ctx.power - 1)


class DetachedDoubleBackward(Function):
    """Silently wrong double backward: backward computed on .detach()-ed values (reported for gradient penalties,
    e.g. pytorch/pytorch issue 51978's neighbours): first derivatives right, second ones zero."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        y = y.detach()
        return grad * y * (1 - y)


class ForgetsGradOutput(Function):
    """The elementwise slip: backward returns the derivative, not grad_output times it."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return 1 - y * y


class MeanWithoutN(Function):
    """A mean-reduced loss whose backward forgot the 1/N."""

    @staticmethod
    def forward(ctx, x, target):
        ctx.save_for_backward(x, target)
        return ((x - target) ** 2).sum(1).mean()

    @staticmethod
    def backward(ctx, grad):
        x, target = ctx.saved_tensors
        return grad * 2 * (x - target), None


class TransposedWeightGrad(Function):
    """y = x W for a square W, whose gradient is returned transposed (gᵀx instead of xᵀg)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w.t(), grad.t() @ x


class SwappedGrads(Function):
    """x · w elementwise with the two gradients returned in the wrong order."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad * x, grad * w


class SavesNoneThenReads(Function):
    """needs_input_grad read in setup_context, ignored in backward: with only x requiring grad, x was saved as None."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w):
        return x @ w.t()

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w = inputs
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, w if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w, grad.t() @ x


class GradOutputInPlace(Function):
    """grad_output scaled in place (grad.mul_), the first attempt of many activation backwards."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad.mul_(y * (1 - y))


class Float32Backward(Function):
    """A float32 gradient for a float64 input (mixed-precision kernels that cast back too late)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return (grad * x.cos()).float()


_MEMO = []


class GlobalMemo(Function):
    """Outputs appended to a module-level memo that is never emptied."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        _MEMO.append(y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class NaiveLogSumExp(Function):
    """log Σ exp(x) without subtracting the max: right, until exp overflows."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp().sum(-1).log()
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad[..., None] * (x - y[..., None]).exp()


def _ce_inputs():
    return _x(4, 5), torch.tensor([0, 2, 4, 1])


def _mse_inputs():
    return _x(4, 3), torch.randn(4, 3, dtype=DOUBLE)


def _lse_reference(x):
    return torch.logsumexp(x, -1)


GALLERY = [
    ("tutorial ReLU (old style)", TutorialReLU, lambda: (_x(4, 5),), {"reference": torch.relu}, None),
    ("docs Exp", DocsExp, lambda: (_x(4, 5),), {"reference": torch.exp}, None),
    ("docs LinearFunction without bias", DocsLinear, lambda: (_x(4, 5), _x(3, 5)), {}, None),
    ("docs LinearFunction with bias", DocsLinear, lambda: (_x(4, 5), _x(3, 5), _x(3)),
     {"reference": torch.nn.functional.linear}, None),
    ("docs MulConstant (non-tensor argument)", DocsMulConstant, lambda: (_x(4, 5), 2.5), {}, None),
    ("MyCube (setup_context, two outputs)", FuncCube, lambda: (_x(3, 4),), {}, None),
    ("NumpyExp_ (NumPy, in place, mark_dirty)", NumpyExpInPlace, lambda: (_x(3, 4),), {"reference": torch.exp}, None),
    ("timm memory-efficient swish", TimmSwish, lambda: (_x(4, 5),), {"reference": torch.nn.functional.silu}, None),
    ("detectron2 empty-tensor op", NewEmptyTensor, lambda: (_x(0, 4), (0, 2, 2)), {}, None),
    ("straight-through rounding", RoundSTE, lambda: (_x(4, 5),), {"true_gradient": False, "reference": torch.round}, None),
    ("gradient reversal", GradientReversal, lambda: (_x(4, 5), 0.7), {"true_gradient": False}, None),
    ("arctan surrogate spike", ATanSpike, lambda: (_x(4, 5),), {"true_gradient": False}, None),
    ("checkpoint-style RNG state on ctx", CheckpointLikeDropout, lambda: (_x(4, 5),), {"seed": 0}, None),
    ("int64 index on ctx", MaxWithIndex, lambda: (_x(4, 5),), {"reference": lambda x: x.max(-1).values}, None),
    ("entmax-style dim keyword", EntmaxStyleSoftmax, lambda: (_x(3, 6),), {"kwargs": {"dim": 0}}, None),
    ("in-place logits without mark_dirty", InPlaceLogitsCE, _ce_inputs, {}, "mutation"),
    ("input kept on ctx", InputOnCtx, lambda: (_x(4, 5),), {"reference": torch.sin}, "ctx_tensors"),
    ("output cycle through a closure", ClosureCycle, lambda: (_x(4, 5),), {"reference": torch.tanh}, "leak"),
    ("grad_output.view assumes contiguous", ViewGradOutput, lambda: (_x(2, 4, 5), _x(5, 3)), {}, "grad_layouts"),
    ("squeeze drops a dimension", SqueezedGrad, lambda: (_x(4, 5), _x(4, 1)), {}, "grad_metadata"),
    ("wrong number of gradients", MissingGradient, lambda: (_x(4, 5, low=0.5), 3), {}, "grad_metadata"),
    ("double backward silently wrong", DetachedDoubleBackward, lambda: (_x(4, 5),), {"reference": torch.sigmoid},
     "gradgradcheck"),
    ("grad_output forgotten", ForgetsGradOutput, lambda: (_x(4, 5),), {"reference": torch.tanh}, "gradcheck"),
    ("mean without 1/N", MeanWithoutN, _mse_inputs, {}, "gradcheck"),
    ("weight gradient transposed", TransposedWeightGrad, lambda: (_x(4, 3), _x(3, 3)), {}, "gradcheck"),
    ("gradients swapped", SwappedGrads, lambda: (_x(4, 5), _x(4, 5)), {"reference": torch.mul}, "gradcheck"),
    ("None saved, then read", SavesNoneThenReads, lambda: (_x(4, 5), _x(3, 5)), {}, "needs_input_grad"),
    ("grad_output modified in place", GradOutputInPlace, lambda: (_x(4, 5),), {"reference": torch.sigmoid}, "mutation"),
    ("float32 gradient for float64", Float32Backward, lambda: (_x(4, 5),), {"reference": torch.sin}, "grad_metadata"),
    ("outputs kept in a global", GlobalMemo, lambda: (_x(4, 5),), {"reference": torch.exp}, "leak"),
    ("logsumexp overflows", NaiveLogSumExp, lambda: (_x(3, 6),), {"reference": _lse_reference}, "reference"),
]

OPTIONS = {"compile_backend": "aot_eager", "timeout": 120}


def run(entry):
    from nnbasics.testing import check_function

    name, fn, inputs, options, _ = entry
    torch.manual_seed(0)
    return check_function(fn, *inputs(), **{**OPTIONS, **options})


def table(rows) -> str:
    """The confusion table: (name, expected check or None, report) rows."""
    sound = [(n, r) for n, e, r in rows if e is None]
    broken = [(n, e, r) for n, e, r in rows if e is not None]
    false_alarms = [n for n, r in sound if r.failed]
    caught = [n for n, e, r in broken if r.failed == [e]]
    other = [n for n, e, r in broken if r.failed and r.failed != [e]]
    missed = [n for n, e, r in broken if not r.failed]
    lines = ["| | reported failing | not failing |", "|---|---|---|",
             f"| sound ({len(sound)}) | {len(false_alarms)} | {len(sound) - len(false_alarms)} |",
             f"| broken ({len(broken)}) | {len(caught) + len(other)} ({len(caught)} by exactly the check named for "
             f"the fault, as one line) | {len(missed)} |"]
    for n in false_alarms + other + missed:
        lines.append(f"\n- not as expected: {n}")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    import warnings
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    warnings.simplefilter("ignore")
    results = [(e[0], e[4], run(e)) for e in GALLERY]
    for name, expected, report in results:
        print(f"{name}: expected {expected or 'no fail'}; failed {report.failed or '-'}; warned {report.warned or '-'}")
    print()
    print(table(results))
