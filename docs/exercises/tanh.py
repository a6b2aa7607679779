"""Exercise 2: the backward of tanh.

    forward:   y = tanh(x) = (e^x - e^(-x)) / (e^x + e^(-x))
    backward:  grad_x = grad_y · dy/dx            what is dy/dx, written with y alone?

setup_context saves the output y. Write ``backward``, then check it:

    python -m nnbasics.check docs/exercises/tanh.py:Tanh

The derivation: docs/ops.md#tanh. Hints, the short answer (docs/exercises/answers/tanh.py) and what the full op adds:
docs/exercises/README.md.

Em português: Exercício 2, o backward da tanh.

    forward:   y = tanh(x) = (e^x - e^(-x)) / (e^x + e^(-x))
    backward:  grad_x = grad_y · dy/dx            quanto é dy/dx, escrita só com y?

O setup_context guarda a saída y. Escreva ``backward`` e verifique:

    python -m nnbasics.check docs/exercises/tanh.py:Tanh --lang pt

A derivação: docs/ops.pt.md#tanh. Dicas, a resposta curta e o que a operação completa
acrescenta: docs/exercises/README.pt.md.
"""
import torch


class Tanh(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        raise NotImplementedError("write Tanh.backward: return grad_y times dy/dx, written with y"
                                  " (pt: escreva Tanh.backward: devolva grad_y vezes dy/dx, escrita com y)")


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)


reference = torch.tanh
