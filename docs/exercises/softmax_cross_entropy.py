"""Exercise: the backward of softmax cross-entropy (mean over the batch).

    forward:   loss = -(1/N) Σ_n log softmax(x_n)[t_n]      x (N, C) logits, t (N,) class indices
    backward:  grad_x = grad_loss · dloss/dx                 what is dloss/dx, with p = softmax(x)?

setup_context saves p = softmax(x) (returned by forward as a second, non-differentiable output,
since a saved tensor must be an input or an output) and the targets. Only the logits get a
gradient: the targets are integers; return None for them.

    python -m nnbasics.check docs/exercises/softmax_cross_entropy.py:softmax_cross_entropy

The answer is ``nnbasics/ops/cross_entropy.py`` (which adds weights, label smoothing and
ignore_index).
"""
import torch


class SoftmaxCrossEntropy(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, target):
        log_p = torch.log_softmax(x, dim=-1)
        loss = -log_p.gather(-1, target.unsqueeze(-1)).mean()
        return loss, log_p.exp()

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, target = inputs
        _, p = output
        ctx.mark_non_differentiable(p)
        ctx.save_for_backward(p, target)

    @staticmethod
    def backward(ctx, grad_loss, _grad_p):
        p, target = ctx.saved_tensors
        raise NotImplementedError("write SoftmaxCrossEntropy.backward: return (dL/dx, None)")


def softmax_cross_entropy(x, target):
    """The loss alone, as torch.nn.functional.cross_entropy returns it."""
    return SoftmaxCrossEntropy.apply(x, target)[0]


def sample_inputs():
    return torch.randn(4, 5, dtype=torch.float64, requires_grad=True), torch.tensor([0, 3, 1, 4])


reference = torch.nn.functional.cross_entropy
