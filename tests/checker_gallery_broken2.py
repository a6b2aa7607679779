"""More of the broken half of the gallery of the wild (tests/checker_gallery.py): a forward intermediate kept on
ctx, a complex gradient without its conjugates; each fault in the style where it is found in public code, the
code ours."""
import torch
from checker_gallery_sound2 import ComplexLinearScan, Float32OnlyGelu, _scan
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class TanhIntermediateOnCtx(Function):
    """The pattern autograd's docs warn about (extending.rst: "intermediary" tensors must be saved with
    save_for_backward or returned as outputs): a forward intermediate kept as a ctx attribute, here a swish whose
    sigmoid is kept for backward; double backward takes it for a constant."""

    @staticmethod
    def forward(ctx, x):
        ctx.s = torch.sigmoid(x)
        ctx.save_for_backward(x)
        return x * ctx.s

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = ctx.s
        return grad * (s + x * s * (1 - s))


class ComplexScanWithoutConj(ComplexLinearScan):
    """The complex scan with the real-valued chain rule: no conjugates in the reverse scan (a slip of SSM code
    ported from real to complex recurrences); autograd's complex gradient is dL/d(conj z)."""

    @staticmethod
    def backward(ctx, grad):
        a, y = ctx.saved_tensors
        prev = torch.cat([torch.zeros_like(y[..., :1]), y[..., :-1]], -1)
        shifted = torch.cat([a[..., 1:], torch.zeros_like(a[..., :1])], -1)
        gx = _scan(shifted.flip(-1), grad.flip(-1)).flip(-1)
        return gx * prev, gx


class LowPrecisionLayerNormStats(Function):
    """A layer norm whose "fast path" takes its statistics in autocast's dtype (E[x²] - E[x]², as some fused
    kernels' Python fallbacks do): in bfloat16 on values near 10 the variance is lost to rounding; the built-in
    layer_norm keeps float32 under autocast."""

    @staticmethod
    def forward(ctx, x):
        low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        xl = x.to(low)
        mean = xl.mean(-1, keepdim=True)
        var = (xl * xl).mean(-1, keepdim=True) - mean * mean
        rstd = (var.to(x.dtype) + 1e-5).rsqrt()
        y = (x - mean.to(x.dtype)) * rstd
        ctx.save_for_backward(y, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        y, rstd = ctx.saved_tensors
        g = grad.to(y.dtype)
        return rstd * (g - g.mean(-1, keepdim=True) - y * (g * y).mean(-1, keepdim=True))


class DetachedForwardExp(Function):
    """forward starts with x = x.detach() (common in public Functions, "forward needs no graph"): right eagerly, but
    under torch.compile Dynamo inlines forward, sees the detach, and torch.func.grad returns zeros."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        x = x.detach()
        return x.exp()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class NaiveLogSigmoid(Function):
    """log(sigmoid(x)) in two steps: sigmoid underflows to 0 for x below about -745 (float64), and log gives -inf
    where logsigmoid is x."""

    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s.log()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        return grad * (1 - s)


class DropoutRedrawsInBackward(Function):
    """A dropout whose backward draws its mask again instead of saving it (the bug of several "memory-saving"
    dropouts): the gradient uses another mask than the output."""

    @staticmethod
    def forward(ctx, x, p):
        ctx.p, ctx.shape = p, x.shape
        return x * (torch.rand_like(x) > p).to(x.dtype) / (1 - p)

    @staticmethod
    def backward(ctx, grad):
        mask = (torch.rand(ctx.shape, dtype=grad.dtype) > ctx.p).to(grad.dtype)
        return grad * mask / (1 - ctx.p), None


class ComplexGradTakesReal(ComplexLinearScan):
    """The complex scan whose backward returns .real of its gradients (code written for real tensors first)."""

    @staticmethod
    def backward(ctx, grad):
        ga, gx = ComplexLinearScan.backward(ctx, grad)
        return ga.real, gx.real


class Float32OnlyWrongGelu(Float32OnlyGelu):
    """A float32-only tanh-GELU with the derivative's 0.5 forgotten: the float32-only limit is said once, and the
    wrong gradient is one failing line, checked in float32."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        k = 0.7978845608028654
        t = (k * (x + 0.044715 * x ** 3)).tanh()
        return grad * ((1 + t) + x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))


class InPlaceJvpOutOfPlace(Function):
    """In place with mark_dirty, and a jvp that returns a new tensor instead of changing the tangent in place:
    forward-mode AD refuses it (an in-place Function's jvp must return its tangent as is)."""

    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        return x.mul_(3)

    @staticmethod
    def backward(ctx, grad):
        return grad * 3

    @staticmethod
    def jvp(ctx, tangent):
        return tangent * 3


class OutputInCtxList(Function):
    """pytorch/pytorch issue 25340 again, through a list: ctx.cache = [y] keeps the output on ctx, a cycle."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.cache = [y]
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.cache[0]


class OnePassVariance(Function):
    """Row variance in one pass, E[x²] - E[x]² (the textbook shortcut of streaming statistics): on values near 100
    the two terms are 10⁴ and cancel to about 1, and float32 keeps about three digits of it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * x).mean(-1) - x.mean(-1) ** 2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad[..., None] * 2 * (x - x.mean(-1, keepdim=True)) / x.shape[-1]


class EpsilonNorm(Function):
    """A row norm sqrt(Σx² + eps) whose forward, not only its backward, is regularised (unlike the safe norm of the
    sound half): the value itself is wrong where |x| approaches sqrt(eps), here at the inputs scaled by 1e-3."""

    @staticmethod
    def forward(ctx, x):
        n = torch.sqrt((x * x).sum(-1) + 1e-10)
        ctx.save_for_backward(x, n)
        return n

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, n = ctx.saved_tensors
        return grad[..., None] * x / n[..., None]
