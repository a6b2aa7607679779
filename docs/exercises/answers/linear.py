"""Exercise 4, answered: linear. With G = dL/dY: dX = G W, dW = Gᵀ X, db = Σ_n G[n]
(each of its input's shape), each computed only if it is asked for.
Em português: com G = dL/dY, dX = G W, dW = Gᵀ X, db = Σ_n G[n] (cada um com a forma da sua
entrada), cada um calculado só se for pedido.

    python -m nnbasics.check docs/exercises/answers/linear.py:Linear
"""
import torch


class Linear(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias):
        return torch.addmm(bias, x, weight.t())

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        needs_x, needs_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if needs_w else None, weight if needs_x else None)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        needs_x, needs_w, needs_b = ctx.needs_input_grad
        grad_x = grad_y @ weight if needs_x else None
        grad_w = grad_y.t() @ x if needs_w else None
        grad_b = grad_y.sum(0) if needs_b else None
        return grad_x, grad_w, grad_b


def sample_inputs():
    def t(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    return t(4, 5), t(3, 5), t(3)


reference = torch.nn.functional.linear
