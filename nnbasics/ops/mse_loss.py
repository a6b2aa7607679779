"""Mean squared error.

Shapes: input x, target y and (optional) weight w all of one shape.

    forward:   l = w (x - y)²                    L = reduce(l)
    backward:  dl/dx =  2 w (x - y)
               dl/dy = -2 w (x - y)
               dl/dw = (x - y)²                  for 'none' and 'sum'
               dL/dw = ((x - y)² - L) / Σw       for 'mean', which divides by Σw

With weights, 'mean' is Σ w (x - y)² / Σ w, as in PyTorch; since Σw itself
depends on w, its derivative gains the - L term (quotient rule).
"""
import torch

from ._reduction import reduce, unreduce


def _total(weight):
    return None if weight is None else weight.sum()


def mse_partials(x, y, weight, reduction, loss):
    """(dl/dx, dl/dy, dl/dw) with the quotient-rule term of a weighted mean folded into dl/dw."""
    d = x - y
    dx = 2 * d if weight is None else 2 * weight * d
    dw = None
    if weight is not None:
        dw = d * d - loss if reduction == "mean" else d * d
    return dx, -dx, dw


def mse_unreduced(x, y, weight):
    """l for every element."""
    d = x - y
    return d * d if weight is None else weight * d * d


def mse_forward(x, y, weight, reduction):
    return reduce(mse_unreduced(x, y, weight), reduction, _total(weight))


def mse_backward(grad_loss, x, y, weight, loss, reduction, needs_input_grad):
    gl = unreduce(grad_loss, reduction, x, _total(weight))
    partials = mse_partials(x, y, weight, reduction, loss)
    # p first: the gradient takes the layout of the partials (the inputs'), not the upstream gradient's
    grads = tuple(p * gl if p is not None and need else None for p, need in zip(partials, needs_input_grad))
    if weight is None:  # torch's mse_loss_backward writes a new contiguous tensor, whatever the inputs' layout
        grads = tuple(g if g is None else g.contiguous() for g in grads)
    return grads


def mse_jvp(tangents, x, y, weight, loss, reduction):
    partials = mse_partials(x, y, weight, reduction, loss)
    l_t = sum(p * t for p, t in zip(partials, tangents) if t is not None)
    return reduce(l_t, reduction, _total(weight))


class MSELoss(torch.autograd.Function):
    """loss = mse_loss(x, y, weight). x, y, weight: same shape; loss: that shape or a scalar."""

    generate_vmap_rule = True
    autocast = "float32"  # under torch.autocast: computed in float32, as the built-in loss

    @staticmethod
    def forward(x, y, weight, reduction):
        return mse_forward(x, y, weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, weight, ctx.reduction = inputs
        loss = output if weight is not None and ctx.reduction == "mean" else None  # only dL/dw reads it
        ctx.save_for_backward(x, y, weight, loss)
        ctx.save_for_forward(x, y, weight, loss)

    @staticmethod
    def backward(ctx, grad_loss):
        return *mse_backward(grad_loss, *ctx.saved_tensors, ctx.reduction, ctx.needs_input_grad[:3]), None

    @staticmethod
    def jvp(ctx, x_t, y_t, weight_t, _reduction_t):
        return mse_jvp((x_t, y_t, weight_t), *ctx.saved_tensors, ctx.reduction)
