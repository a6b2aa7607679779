"""Exercise 4: the backward of a linear layer.

    forward:   Y = X Wᵀ + b          X (N, in), W (out, in), b (out,)  →  Y (N, out)
    backward:  given G = dL/dY (N, out), return dL/dX (N, in), dL/dW (out, in), dL/db (out,)

Each gradient has exactly its input's shape. Compute only those ``ctx.needs_input_grad`` asks
for (None for the others): the checker's needs_input_grad check looks. And save only what the
requested gradients read: dL/dX needs W, dL/dW needs X (setup_context does this already).

    python -m nnbasics.check docs/exercises/linear.py:Linear

The derivation: docs/ops.md#linear. Hints, the short answer (docs/exercises/answers/linear.py) and what the full op adds:
docs/exercises/README.md.

Em português: Exercício 4, o backward de uma camada linear.

    forward:   Y = X Wᵀ + b          X (N, in), W (out, in), b (out,)  →  Y (N, out)
    backward:  dado G = dL/dY (N, out), devolva dL/dX (N, in), dL/dW (out, in), dL/db (out,)

Cada gradiente tem exatamente a forma da sua entrada. Calcule só os que ``ctx.needs_input_grad``
pede (None para os outros): a verificação needs_input_grad confere. E guarde só o que os
gradientes pedidos leem: dL/dX precisa de W, dL/dW precisa de X (o setup_context já faz isso).

    python -m nnbasics.check docs/exercises/linear.py:Linear --lang pt

A derivação: docs/ops.pt.md#linear. Dicas, a resposta curta e o que a operação completa
acrescenta: docs/exercises/README.pt.md.
"""
import torch


class Linear(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias):
        return torch.addmm(bias, x, weight.t())

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        needs_x, needs_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if needs_w else None, weight if needs_x else None)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        raise NotImplementedError("write Linear.backward: return (dL/dX, dL/dW, dL/db), None where not needed"
                                  " (pt: escreva Linear.backward: devolva (dL/dX, dL/dW, dL/db), None onde não for pedido)")


def sample_inputs():
    def t(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    return t(4, 5), t(3, 5), t(3)


reference = torch.nn.functional.linear
