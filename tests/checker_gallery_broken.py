"""The broken half of the gallery of the wild (tests/checker_gallery.py): each fault beside the repository and
the issue or pull request where it was reported; the code is ours."""
import torch
from torch.autograd import Function

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
    """dmlc/dgl pull 1060 (tensors in ctx.backward_cache): the input kept as a ctx attribute. Right, but hidden
    from saved-tensor hooks: a warning (tests/checker_gallery.py lists it with the sound ones)."""

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


class JvpWithoutTangent(Function):
    """The forward-mode slip of extending.func.rst-style Functions: jvp returns the derivative, not derivative ·
    tangent (the twin of forgetting grad_output)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.exp()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y

    @staticmethod
    def jvp(ctx, tangent):
        (y,) = ctx.saved_tensors
        # .clone(): returning the saved output itself as its own tangent crashes the process (a segmentation
        # fault in gradcheck's forward-mode pass, torch 2.13), which no check can report.
        return y.clone()
