"""Linear (fully connected) layer.

Shapes: x (*, in), W (out, in), b (out,)  →  y (*, out). Flatten the leading
dims of x into one, N = prod(*), and write X (N, in), G = dL/dY (N, out):

    forward:   Y = X Wᵀ + b
    backward:  dL/dX = G W              (N, out) @ (out, in)  → (N, in)
               dL/dW = Gᵀ X             (out, N) @ (N, in)    → (out, in)
               dL/db = Σ_n G[n]         sum over the batch    → (out,)

Each gradient needs only the *other* factor: dL/dX needs W, dL/dW needs X.
So X is saved only if W needs a gradient, and W only if X does: the first
layer of a network, whose input needs no gradient, keeps no weight alive.
"""
import torch


def linear_forward(x, weight, bias):
    x2 = x.reshape(-1, x.shape[-1])
    y2 = x2 @ weight.t() if bias is None else torch.addmm(bias, x2, weight.t())
    # A 2-D input's result is returned as it is, not as a reshaped view of itself: autograd
    # forbids in-place changes to a view made inside a Function, and y.relu_() after a layer
    # (torch.nn.ReLU(inplace=True)) is common.
    return y2 if x.dim() == 2 else y2.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward(grad_y, x, weight, needs_input_grad):
    needs_x, needs_w, needs_b = needs_input_grad
    g2 = grad_y.reshape(-1, grad_y.shape[-1])
    grad_x = grad_w = grad_b = None
    if needs_x:
        grad_x = (g2 @ weight).reshape(*grad_y.shape[:-1], weight.shape[1])
    if needs_w:
        grad_w = g2.t() @ x.reshape(-1, x.shape[-1])
    if needs_b:
        grad_b = g2.sum(0)
    return grad_x, grad_w, grad_b


class Linear(torch.autograd.Function):
    """y = x Wᵀ + b. x: (*, in); weight: (out, in); bias: (out,) or None; y: (*, out)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias):
        return linear_forward(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        needs_x, needs_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if needs_w else None, weight if needs_x else None)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        return linear_backward(grad_y, x, weight, ctx.needs_input_grad)

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t):
        # d(x Wᵀ + b) = dx Wᵀ + x dWᵀ + db  (product rule; absent tangents are zero)
        x, weight = ctx.saved_tensors
        y_t = 0
        if x_t is not None:
            y_t = y_t + x_t @ weight.t()
        if weight_t is not None:
            y_t = y_t + x @ weight_t.t()
        if bias_t is not None:
            y_t = y_t + bias_t
        return y_t
