"""Exercise 5, answered: softmax cross-entropy, the mean over a batch of N rows.
dloss/dx = (p - onehot(t)) / N with p = softmax(x); the targets get no gradient.
Em português: a média sobre um batch de N linhas; dloss/dx = (p - onehot(t)) / N com
p = softmax(x); os alvos não recebem gradiente.

    python -m nnbasics.check docs/exercises/answers/softmax_cross_entropy.py:SoftmaxCrossEntropy
"""
import torch


class SoftmaxCrossEntropy(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, target):
        log_p = torch.log_softmax(x, dim=-1)
        return -log_p.gather(-1, target.unsqueeze(-1)).mean()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad_loss):
        x, target = ctx.saved_tensors
        p = torch.softmax(x, dim=-1)
        one_hot = torch.nn.functional.one_hot(target, x.shape[-1]).to(x.dtype)
        return grad_loss * (p - one_hot) / x.shape[0], None


def sample_inputs():
    return torch.randn(4, 5, dtype=torch.float64, requires_grad=True), torch.tensor([0, 3, 1, 4])


reference = torch.nn.functional.cross_entropy
