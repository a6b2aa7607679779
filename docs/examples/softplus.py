"""Softplus, y = log(1 + e^x), as an autograd Function: the first attempt of docs/checker.md, fixed.

    python -m nnbasics.check docs/examples/softplus.py:Softplus
"""
import torch


class Softplus(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): e^-|x| never overflows
        return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        return grad_y * torch.sigmoid(x)  # dy/dx = e^x / (1 + e^x) = σ(x)


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)


reference = torch.nn.functional.softplus
