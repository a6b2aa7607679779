"""Exercise 1, answered: sigmoid. dy/dx = σ(x)(1 - σ(x)) = y(1 - y), so the output is all backward needs.
Em português: dy/dx = σ(x)(1 - σ(x)) = y(1 - y), então a saída é tudo de que o backward precisa.

    python -m nnbasics.check docs/exercises/answers/sigmoid.py:Sigmoid
"""
import torch


class Sigmoid(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return grad_y * y * (1 - y)


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)


reference = torch.sigmoid
