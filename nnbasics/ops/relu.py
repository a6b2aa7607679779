"""ReLU.

    forward:   y = max(x, 0)
    backward:  dy/dx = 1 if x > 0 else 0                so  grad_x = grad_y · [x > 0]

The derivative at exactly 0 is taken to be 0, as in PyTorch.

What to save: backward needs only *where* x was positive, and the output tells:
y > 0 exactly where x > 0, and a NaN input gives a NaN output. So the output y
is saved, as ``torch.relu`` saves it, and not a 1-byte mask of ``x > 0``:

- in a network, the next layer (``Linear``, a loss) saves y too, for its own
  backward; the saved tensor is the same storage, and ReLU's costs nothing;
- a separate mask would be 1 byte per element *on top* of that.

The rule, for every activation whose derivative can be read off its output:
save the output, because whatever consumes it usually keeps it anyway. The
exception is ``Dropout`` right after the activation: then nobody keeps the
activation's output, and a 1-byte mask is cheaper (``activation_dropout.py``).

The gradient is written ``0 where y <= 0, else grad_y`` (a ``where``, not a
product with a mask), which is ``threshold_backward``'s definition: a NaN
input, whose output is NaN, passes its gradient through, and a NaN or
infinite grad_y where y <= 0 gives 0, not NaN.

``ReLU_`` is the in-place variant (``relu(x, inplace=True)``): it writes y into x's
memory and tells autograd so with ``ctx.mark_dirty``.
"""
import torch


def relu_forward(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0)


def relu_passes(y: torch.Tensor) -> torch.Tensor:
    """Where dy/dx = 1, read off the output y = relu(x): y != 0 (y is 0 exactly where x <= 0,
    positive where x > 0, and NaN where x is NaN, which passes)."""
    return y != 0


def relu_derivative_times(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """v · dy/dx, elementwise, from the output y: v where y > 0 (or NaN), 0 elsewhere."""
    return torch.where(y <= 0, 0, v)


class ReLU(torch.autograd.Function):
    """y = relu(x). x: any shape; y: same shape. Saves y (see the module docstring)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return relu_forward(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return relu_derivative_times(grad_y, y)

    @staticmethod
    def jvp(ctx, x_t):
        (y,) = ctx.saved_tensors
        return relu_derivative_times(x_t, y)


class ReLU_(ReLU):
    """relu_(x): y written into x itself, and x returned.

    ``ctx.mark_dirty(x)`` tells autograd that x was changed in place: autograd then refuses a
    leaf that requires grad (as for ``torch.relu_``) and raises if anything had saved the old x.
    The saved output is x itself, the tensor the next layer keeps anyway: nothing beside it."""

    @staticmethod
    def forward(x):
        return x.clamp_min_(0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        ReLU.setup_context(ctx, inputs, output)
