"""Exercise 5: the backward of softmax cross-entropy (mean over the batch).

    forward:   loss = -(1/N) Σ_n log softmax(x_n)[t_n]      x (N, C) logits, t (N,) class indices
    backward:  grad_x = grad_loss · dloss/dx                 what is dloss/dx, with p = softmax(x)?

setup_context saves the logits x and the targets t; backward recomputes p = softmax(x) from x
with torch ops, so that backward itself can be differentiated (second derivatives). Only the
logits get a gradient: the targets are integers; return None for them.

    python -m nnbasics.check docs/exercises/softmax_cross_entropy.py:SoftmaxCrossEntropy

The derivation: docs/ops.md#cross_entropy. Hints, the short answer (docs/exercises/answers/softmax_cross_entropy.py) and what the full op adds:
docs/exercises/README.md.

Em português: Exercício 5, o backward da entropia cruzada com softmax (média sobre o batch).

    forward:   loss = -(1/N) Σ_n log softmax(x_n)[t_n]      x (N, C) logits, t (N,) índices de classe
    backward:  grad_x = grad_loss · dloss/dx                 quanto é dloss/dx, com p = softmax(x)?

O setup_context guarda os logits x e os alvos t; o backward recalcula p = softmax(x) a partir de x
com operações do torch, para que o próprio backward possa ser derivado (derivadas segundas). Só os
logits recebem gradiente: os alvos são inteiros; devolva None para eles.

    python -m nnbasics.check docs/exercises/softmax_cross_entropy.py:SoftmaxCrossEntropy --lang pt

A derivação: docs/ops.pt.md#entropia-cruzada. Dicas, a resposta curta e o que a operação
completa acrescenta: docs/exercises/README.pt.md.
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
        raise NotImplementedError("write SoftmaxCrossEntropy.backward: return (dL/dx, None)"
                                  " (pt: escreva SoftmaxCrossEntropy.backward: devolva (dL/dx, None))")


def sample_inputs():
    return torch.randn(4, 5, dtype=torch.float64, requires_grad=True), torch.tensor([0, 3, 1, 4])


reference = torch.nn.functional.cross_entropy
