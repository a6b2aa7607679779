"""ReLU.

    forward:   y = max(x, 0)
    backward:  dy/dx = 1 if x > 0 else 0                so  grad_x = grad_y · [x > 0]

The derivative at exactly 0 is taken to be 0, as in PyTorch.

What to save: backward needs only *where* x was positive. A boolean mask costs
1 byte per element, the float output 2 to 8, so the mask is saved. It is
written ``not (x <= 0)`` rather than ``x > 0`` so that a NaN input, whose
output is NaN, passes its gradient through exactly as ``torch.relu`` does.

The mask is an intermediate, not an input or output, and ``torch.func`` needs
every saved tensor to be one of those: so forward returns it as a second,
non-differentiable output, and ``nnbasics.functional.relu`` hands back only y.
"""
import torch


def relu_forward(x: torch.Tensor):
    return x.clamp_min(0), torch.logical_not(x <= 0)


def relu_backward(grad_y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return grad_y * mask


def save_mask(ctx, mask: torch.Tensor) -> None:
    """Keep ``mask``, returned by forward as a second output, for backward and jvp.

    It is marked non-differentiable (it is a function of x, but a piecewise constant
    one), and gradients are not materialized: autograd would otherwise allocate a zero
    "gradient of the mask" for every backward. ReLU, LeakyReLU, Hardtanh and Dropout
    all keep their mask this way.
    """
    ctx.mark_non_differentiable(mask)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(mask)
    ctx.save_for_forward(mask)


class ReLU(torch.autograd.Function):
    """(y, mask) = relu(x). x: any shape; y: same shape; mask: bool, same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return relu_forward(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        save_mask(ctx, output[1])

    @staticmethod
    def backward(ctx, grad_y, _grad_mask):
        if grad_y is None:  # y got no gradient (grads are not materialized)
            return None
        (mask,) = ctx.saved_tensors
        return relu_backward(grad_y, mask)

    @staticmethod
    def jvp(ctx, x_t):
        (mask,) = ctx.saved_tensors
        return relu_backward(x_t, mask), None
