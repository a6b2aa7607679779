"""An activation followed by dropout, as one op: z = dropout(f(x), p), for f = relu, leaky_relu, hardtanh.

    forward:   y = f(x),  z = y · m / (1 - p)            m ~ Bernoulli(1 - p), drawn by ``dropout.py``'s draw_keep
    backward:  dz/dx = m / (1 - p) · f'(x)               so  grad_x = grad_z · m / (1 - p) · f'(x)

It has no twin in ``torch.nn.functional``: it is the composition ``dropout(f(x), p)`` and
computes exactly what that composition computes with nnbasics' dropout (same mask from the same seed, same output,
same gradients, NaN and kinks included). What it changes is **what is saved**.

Separately, f saves its output y (see ``relu.py`` for why: the next layer usually keeps it
anyway), and dropout a 1-byte mask. But after dropout the next layer keeps z, not y, so y is
kept for f alone: 1 + 2..8 bytes per element. Together, one op sees both derivatives:

- relu, hardtanh: f'(x) is 0 or 1, so dz/dx = (m and f'(x) = 1) / (1 - p). One bool mask,
  ``keep & passes``, holds all backward needs: 1 byte per element, and y is not kept.
- leaky_relu (a ≥ 0): f'(x) is 1 or a, three values with m. The mask m is saved, and the
  output z, whose sign is x's wherever m = 1 (z = y / (1 - p), y > 0 exactly where x > 0):
  z is what the next layer keeps anyway. For a < 0 z no longer tells x's sign, and the op
  refuses such a slope (apply leaky_relu, then dropout).

``nnbasics.nn.MLP``, which knows that dropout follows its activation, uses this op (through the
module ``nnbasics.nn.ActivationDropout``); a ``Sequential`` of separate modules cannot. Like
``Dropout`` it returns the mask as a second, non-differentiable output (``_saved_mask.py``).
The formulas are the two ops' own.
"""
import torch

from ._saved_mask import save_mask
from .dropout import draw_keep, dropout_derivative_times
from .hardtanh import hardtanh_forward, hardtanh_passes
from .leaky_relu import leaky_relu_derivative_times, leaky_relu_forward, leaky_relu_saves_output
from .relu import relu_forward, relu_passes

ACTIVATIONS = ("relu", "leaky_relu", "hardtanh")


def activation_dropout_forward(x: torch.Tensor, activation: str, p: float, params: tuple, keep: torch.Tensor):
    """(z, mask): the output, and the bool mask backward needs. ``keep`` is dropout's
    Bernoulli(1 - p) draw: True where the element is kept."""
    check(activation, params)
    if activation == "relu":
        y = relu_forward(x)
        mask = keep & relu_passes(y)
        return dropout_derivative_times(y, keep, p), mask
    if activation == "hardtanh":
        y = hardtanh_forward(x, *params)
        return dropout_derivative_times(y, keep, p), keep & hardtanh_passes(x, *params)
    return dropout_derivative_times(leaky_relu_forward(x, *params), keep, p), keep


def activation_dropout_derivative_times(v: torch.Tensor, mask: torch.Tensor, activation: str, p: float,
                                        params: tuple, z: torch.Tensor = None) -> torch.Tensor:
    """v · dz/dx, elementwise, from the saved mask (and, for leaky_relu, the output z)."""
    v = dropout_derivative_times(v, mask, p)
    if activation == "leaky_relu":
        return leaky_relu_derivative_times(v, z, *params)
    return v


def check(activation: str, params: tuple) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation_dropout: activation={activation!r} is not one of {ACTIVATIONS}; "
                         "for another activation apply it, then dropout")
    if activation == "leaky_relu" and not leaky_relu_saves_output(*params):
        raise ValueError(f"activation_dropout: negative_slope={params[0]} < 0 is not supported (the output "
                         "no longer tells the input's sign); apply leaky_relu, then dropout")


class ActivationDropout(torch.autograd.Function):
    """(z, mask) = dropout(activation(x, *params), p), training mode.

    x: any shape; z, mask: same shape. ``params``: () for relu, (negative_slope,) for
    leaky_relu, (min_val, max_val) for hardtanh.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, activation, p, params):
        return activation_dropout_forward(x, activation, p, params, draw_keep(x, p))

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.activation, ctx.p, ctx.params = inputs
        z, mask = output
        # leaky_relu's backward also reads z (its sign): z is an output, kept by the next layer anyway.
        save_mask(ctx, mask, *([z] if ctx.activation == "leaky_relu" else []))

    @staticmethod
    def backward(ctx, grad_z, _grad_mask):
        if grad_z is None:  # z got no gradient (grads are not materialized)
            return None, None, None, None
        mask, *z = ctx.saved_tensors
        return activation_dropout_derivative_times(grad_z, mask, ctx.activation, ctx.p, ctx.params, *z), None, None, None

    @staticmethod
    def jvp(ctx, x_t, _activation_t, _p_t, _params_t):
        mask, *z = ctx.saved_tensors
        return activation_dropout_derivative_times(x_t, mask, ctx.activation, ctx.p, ctx.params, *z), None
