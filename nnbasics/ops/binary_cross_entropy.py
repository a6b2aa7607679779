"""Binary cross-entropy, on probabilities and (stably) on logits.

On probabilities p ∈ [0, 1] with targets y and element weights w:

    forward:   l = -w (y log p + (1 - y) log(1 - p))
    backward:  dl/dp = w (p - y) / (p (1 - p))
               dl/dy = w (log(1 - p) - log p)

As in PyTorch, each log is clamped at -100 so that p = 0 or 1 gives a large
finite loss instead of inf, and p (1 - p) is clamped at 1e-12.

On logits x (p = σ(x)), with softplus(z) = log(1 + e^z), an optional
positive-class weight r (``pos_weight``) and c = 1 + (r - 1) y:

    forward:   l = w ((1 - y) x + c · softplus(-x))            (-log σ(x) = softplus(-x))
    backward:  dl/dx = w ((1 - y) - c σ(-x))                   = w (σ(x) - y) when r = 1
               dl/dy = w ((r - 1) softplus(-x) - x)            = -w x        when r = 1

Never forming log σ(x) keeps it exact for any x: softplus(z) = max(z, 0) + log(1 + e^(-|z|))
never overflows, which is why this is the loss to use after a sigmoid.
"""
import torch

from ._reduction import reduce, unreduce
from .sigmoid import sigmoid_forward

LOG_CLAMP = -100.0
EPS = 1e-12


def _clamped_logs(p):
    return torch.log(p).clamp_min(LOG_CLAMP), torch.log(1 - p).clamp_min(LOG_CLAMP)


def _weighted(value, weight):
    return value if weight is None else weight * value


def bce_unreduced(p, y, weight):
    """l for every element."""
    log_p, log_1mp = _clamped_logs(p)
    # p's terms first: the output takes the input's layout, as the built-in's does
    return _weighted(-(log_p * y + log_1mp * (1 - y)), weight)


def bce_partials(p, y, weight, needed=(True, True)):
    """(dl/dp, dl/dy), each only where ``needed`` (else None). dl/dy does not read y."""
    dp = dy = None
    if needed[0]:
        dp = _weighted((p - y) / (p * (1 - p)).clamp_min(EPS), weight)
    if needed[1]:
        log_p, log_1mp = _clamped_logs(p)
        dy = _weighted(log_1mp - log_p, weight)
    return dp, dy


def softplus(z):
    return z.clamp_min(0) + torch.log1p(torch.exp(-z.abs()))


def bce_with_logits_unreduced(x, y, weight, pos_weight):
    """l for every element."""
    c = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
    return _weighted((1 - y) * x + c * softplus(-x), weight)


def bce_with_logits_partials(x, y, weight, pos_weight, needed=(True, True)):
    """(dl/dx, dl/dy), each only where ``needed`` (else None). dl/dy does not read y."""
    dx = dy = None
    if needed[0]:
        if pos_weight is None:
            dx = sigmoid_forward(x) - y
        else:
            dx = (1 - y) - (1 + (pos_weight - 1) * y) * sigmoid_forward(-x)
        dx = _weighted(dx, weight)
    if needed[1]:
        dy = _weighted(-x if pos_weight is None else (pos_weight - 1) * softplus(-x) - x, weight)
    return dx, dy


def bce_forward(p, y, weight, reduction):
    return reduce(bce_unreduced(p, y, weight), reduction)


def bce_with_logits_forward(x, y, weight, pos_weight, reduction):
    return reduce(bce_with_logits_unreduced(x, y, weight, pos_weight), reduction)


def _backward(partials, grad_loss, reduction, like, needs_input_grad):
    """Shared by both losses: upstream gradient times the partials, for the inputs that need one."""
    gl = unreduce(grad_loss, reduction, like)
    # d first: the gradient takes the layout of the partials (the inputs'), as the built-in's does,
    # not that of the upstream gradient
    return tuple(d * gl if need else None for d, need in zip(partials, needs_input_grad))


def bce_backward(grad_loss, p, y, weight, reduction, needs_input_grad):
    return _backward(bce_partials(p, y, weight, needs_input_grad), grad_loss, reduction, p, needs_input_grad)


def bce_with_logits_backward(grad_loss, x, y, weight, pos_weight, reduction, needs_input_grad):
    partials = bce_with_logits_partials(x, y, weight, pos_weight, needs_input_grad)
    return _backward(partials, grad_loss, reduction, x, needs_input_grad)


def _jvp(partials, tangents, reduction):
    l_t = sum(d * t for d, t in zip(partials, tangents) if t is not None)
    return reduce(l_t, reduction)


class BinaryCrossEntropy(torch.autograd.Function):
    """loss = binary_cross_entropy(p, y, w). p, y: same shape; w broadcastable to it."""

    generate_vmap_rule = True
    autocast = "float32"  # under torch.autocast: computed in float32, as the built-in loss

    @staticmethod
    def forward(p, y, weight, reduction):
        return bce_forward(p, y, weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        p, y, weight, ctx.reduction = inputs
        ctx.save_for_backward(p, y if ctx.needs_input_grad[0] else None, weight)  # only dl/dp reads y
        ctx.save_for_forward(p, y, weight)

    @staticmethod
    def backward(ctx, grad_loss):
        return *bce_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2]), None, None

    @staticmethod
    def jvp(ctx, p_t, y_t, *_):
        p, y, weight = ctx.saved_tensors
        return _jvp(bce_partials(p, y, weight, (p_t is not None, y_t is not None)), (p_t, y_t), ctx.reduction)


class BinaryCrossEntropyWithLogits(torch.autograd.Function):
    """loss = binary_cross_entropy_with_logits(x, y, w, pos_weight). x, y: same shape;
    w broadcastable to it; pos_weight broadcastable along the last (class) dimension."""

    generate_vmap_rule = True
    autocast = "float32"  # under torch.autocast: computed in float32, as the built-in loss

    @staticmethod
    def forward(x, y, weight, pos_weight, reduction):
        return bce_with_logits_forward(x, y, weight, pos_weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, weight, pos_weight, ctx.reduction = inputs
        ctx.save_for_backward(x, y if ctx.needs_input_grad[0] else None, weight, pos_weight)  # only dl/dx reads y
        ctx.save_for_forward(x, y, weight, pos_weight)

    @staticmethod
    def backward(ctx, grad_loss):
        grads = bce_with_logits_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:2])
        return *grads, None, None, None

    @staticmethod
    def jvp(ctx, x_t, y_t, *_):
        x, y, weight, pos_weight = ctx.saved_tensors
        partials = bce_with_logits_partials(x, y, weight, pos_weight, (x_t is not None, y_t is not None))
        return _jvp(partials, (x_t, y_t), ctx.reduction)
