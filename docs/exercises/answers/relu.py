"""Exercise 3, answered: ReLU. dy/dx is 1 where x > 0 and 0 elsewhere, 0 at x = 0 included
(PyTorch's choice). y > 0 exactly where x > 0, so the saved output tells where.
Em português: dy/dx é 1 onde x > 0 e 0 no resto, inclusive em x = 0 (a escolha do PyTorch). y > 0
exatamente onde x > 0, então a saída guardada diz onde.

    python -m nnbasics.check docs/exercises/answers/relu.py:ReLU
"""
import torch


class ReLU(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return grad_y * (y > 0)


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)


reference = torch.relu
