"""Exercise 3: the backward of ReLU.

    forward:   y = max(x, 0)
    backward:  grad_x = grad_y · dy/dx            dy/dx is 1 or 0: where, and what at x = 0?

setup_context saves the output y. Can backward tell from y alone where x was positive?
Write ``backward``, then check it:

    python -m nnbasics.check docs/exercises/relu.py:ReLU

The derivation: docs/ops.md#relu-leaky_relu-hardtanh-piecewise-linear. Hints, the short answer (docs/exercises/answers/relu.py) and what the full op adds:
docs/exercises/README.md.

Em português: Exercício 3, o backward da ReLU.

    forward:   y = max(x, 0)
    backward:  grad_x = grad_y · dy/dx            dy/dx é 1 ou 0: onde, e quanto em x = 0?

O setup_context guarda a saída y. Só com y, o backward sabe onde x era positivo? Escreva
``backward`` e verifique:

    python -m nnbasics.check docs/exercises/relu.py:ReLU --lang pt

A derivação: docs/ops.pt.md#relu. Dicas, a resposta curta e o que a operação completa
acrescenta: docs/exercises/README.pt.md.
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
        raise NotImplementedError("write ReLU.backward: return grad_y where x was > 0, and 0 elsewhere"
                                  " (pt: escreva ReLU.backward: devolva grad_y onde x era > 0, e 0 no resto)")


def sample_inputs():
    return (torch.randn(4, 5, dtype=torch.float64, requires_grad=True),)  # no 0: finite differences fail at a kink


reference = torch.relu
