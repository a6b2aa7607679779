"""A first attempt at softplus, y = log(1 + e^x), as an autograd Function: docs/checker.md checks it.

    python -m nnbasics.check docs/examples/softplus_first_attempt.py:Softplus
"""
import torch


class Softplus(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.log(1 + torch.exp(x))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.x = inputs[0]

    @staticmethod
    def backward(ctx, grad_y):
        return grad_y.mul_(torch.sigmoid(ctx.x))  # dy/dx = e^x / (1 + e^x) = σ(x)


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)


reference = torch.nn.functional.softplus
