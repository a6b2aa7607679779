"""Exercise 1: the backward of sigmoid.

    forward:   y = σ(x) = 1 / (1 + e^(-x))
    backward:  grad_x = grad_y · dy/dx            what is dy/dx, written with y alone?

setup_context saves the output y: that is all backward may use. Write ``backward``, then check it:

    python -m nnbasics.check docs/exercises/sigmoid.py:Sigmoid

Every check passes when it is right (forward_ad is skipped: there is no jvp; add one as a second
exercise). The derivation: docs/ops.md#sigmoid. Hints, the short answer (docs/exercises/answers/sigmoid.py) and what the full op adds:
docs/exercises/README.md.

Em português: Exercício 1, o backward da sigmoide.

    forward:   y = σ(x) = 1 / (1 + e^(-x))
    backward:  grad_x = grad_y · dy/dx            quanto é dy/dx, escrita só com y?

O setup_context guarda a saída y: é tudo o que o backward pode usar. Escreva ``backward`` e
verifique:

    python -m nnbasics.check docs/exercises/sigmoid.py:Sigmoid --lang pt

Todas as verificações passam quando está certo (forward_ad é pulada: não há jvp; escrever um é um
segundo exercício). A derivação: docs/ops.pt.md#sigmoide. Dicas, a resposta curta e o que a
operação completa acrescenta: docs/exercises/README.pt.md.
"""
import torch


class Sigmoid(torch.autograd.Function):
    generate_vmap_rule = True  # torch.func.vmap derives the batched rule from forward and backward

    @staticmethod
    def forward(x):
        return torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        raise NotImplementedError("write Sigmoid.backward: return grad_y times dy/dx, written with y"
                                  " (pt: escreva Sigmoid.backward: devolva grad_y vezes dy/dx, escrita com y)")


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)


reference = torch.sigmoid
