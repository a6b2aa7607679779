"""ReLU.

    forward:   y = max(x, 0)
    backward:  dy/dx = 1 if x > 0 else 0                so  grad_x = grad_y · [x > 0]

The derivative at exactly 0 is taken to be 0, as in PyTorch.

What to save: backward needs only *where* x was positive. A boolean mask costs
1 byte per element, the float output 2 to 8, so the mask is saved. It is
written ``not (x <= 0)`` rather than ``x > 0`` so that a NaN input, whose
output is NaN, passes its gradient through exactly as ``torch.relu`` does.
Forward returns the mask as a second output (see ``_masks.py`` for why);
``nnbasics.functional.relu`` hands back only y.
"""
import torch

from ._masks import save_mask


def relu_forward(x: torch.Tensor):
    return x.clamp_min(0), torch.logical_not(x <= 0)


def relu_derivative_times(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """v · dy/dx, elementwise: dy/dx is 1 where x > 0 and 0 elsewhere, i.e. the mask."""
    return v * mask


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
        return relu_derivative_times(grad_y, mask)

    @staticmethod
    def jvp(ctx, x_t):
        (mask,) = ctx.saved_tensors
        return relu_derivative_times(x_t, mask), None
