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

Layouts: a gradient has the layout of its tensor where PyTorch's matrix-product
backward gives it that layout: for an X stored column by column (X = Aᵀ with A
contiguous) dL/dX is computed as (Wᵀ Gᵀ)ᵀ, the same numbers stored the same way,
and likewise dL/dW = (Xᵀ G)ᵀ for a W that is not stored row by row.
"""
import torch


def linear_forward(x, weight, bias):
    if x.dim() == 2:
        return x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())
    # Other ranks: matmul multiplies the flattened rows (X Wᵀ above) and returns a tensor of its
    # own, not a reshaped view: autograd forbids in-place changes to a view made inside a Function,
    # and y.relu_() after a layer (torch.nn.ReLU(inplace=True)) is common.
    y = x @ weight.t()
    return y if bias is None else y.add_(bias)


def column_major(m: torch.Tensor) -> bool:
    """Whether ``m`` is a matrix stored column by column (``m.t()`` is contiguous)."""
    return m.dim() == 2 and m.stride(0) == 1 and m.stride(1) == m.shape[0]


def row_major(m: torch.Tensor) -> bool:
    return m.dim() == 2 and m.stride(1) == 1 and m.stride(0) == m.shape[1]


def _rows(t):
    """t (*, k) as the matrix (N, k), N = prod(*): counted, not inferred with -1, which is
    ambiguous when k = 0 (a layer with no inputs or no outputs) and torch refuses."""
    return t.reshape(t.shape[:-1].numel(), t.shape[-1])


def linear_backward(grad_y, x, weight, needs_input_grad, transposed=(False, False)):
    """``transposed``: (x is column-major, W is not row-major), the layouts in which the gradient
    is computed as the transpose of the transposed product (see the module docstring)."""
    needs_x, needs_w, needs_b = needs_input_grad
    x_transposed, w_transposed = transposed
    g2 = grad_y if grad_y.dim() == 2 else _rows(grad_y)
    grad_x = grad_w = grad_b = None
    if needs_x:
        grad_x = (weight.t() @ g2.t()).t() if x_transposed else g2 @ weight
        if grad_y.dim() != 2:
            grad_x = grad_x.reshape(*grad_y.shape[:-1], weight.shape[1])
    if needs_w:
        x2 = x if x.dim() == 2 else _rows(x)
        grad_w = (x2.t() @ g2).t() if w_transposed else g2.t() @ x2
    if needs_b:
        grad_b = g2.sum(0)
    return grad_x, grad_w, grad_b


class Linear(torch.autograd.Function):
    """y = x Wᵀ + b. x: (*, in); weight: (out, in); bias: (out,) or None; y: (*, out)."""

    generate_vmap_rule = True
    autocast = "low"  # under torch.autocast: computed in the low-precision dtype, as torch.nn.functional.linear

    @staticmethod
    def forward(x, weight, bias):
        return linear_forward(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _bias = inputs
        needs_x, needs_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if needs_w else None, weight if needs_x else None)
        ctx.save_for_forward(x, weight)
        ctx.transposed = (column_major(x), not row_major(weight))

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        return linear_backward(grad_y, x, weight, ctx.needs_input_grad, ctx.transposed)

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
