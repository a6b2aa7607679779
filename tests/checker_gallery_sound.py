"""The sound half of the gallery of the wild (tests/checker_gallery.py): Functions in the styles of public code,
each beside the repository (and file) whose pattern it follows; the code is ours."""
import numpy as np
import torch
from torch.autograd import Function

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


class NumpySort(Function):
    """autograd_function_db.py's NumpySort: NumPy inside, three outputs, two marked non-differentiable."""

    @staticmethod
    def forward(ctx, x, dim):
        xn = x.detach().cpu().numpy()
        ind = np.argsort(xn, axis=dim)
        ind_inv = np.argsort(ind, axis=dim)
        result = torch.tensor(np.take_along_axis(xn, ind, axis=dim), device=x.device)
        ind, ind_inv = torch.tensor(ind, device=x.device), torch.tensor(ind_inv, device=x.device)
        ctx.mark_non_differentiable(ind, ind_inv)
        ctx.save_for_backward(ind_inv)
        ctx.dim = dim
        return result, ind, ind_inv

    @staticmethod
    def backward(ctx, grad, _ind, _ind_inv):
        (ind_inv,) = ctx.saved_tensors
        return grad.gather(ctx.dim, ind_inv), None


class SinCosUnmaterialized(Function):
    """Two outputs with ctx.set_materialize_grads(False) (as in pytorch/pytorch's extending.rst): backward gets
    None for an unused output and must cope."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, grad_sin, grad_cos):
        (x,) = ctx.saved_tensors
        out = torch.zeros_like(x)
        if grad_sin is not None:
            out = out + grad_sin * x.cos()
        if grad_cos is not None:
            out = out - grad_cos * x.sin()
        return out
