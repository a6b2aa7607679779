"""The hand-written autograd Functions, one file per op.

Each file states the forward and backward math in its docstring, then holds
the formulas as plain functions and the ``torch.autograd.Function`` that wires
them into autograd. The formulas are kept as functions so the fused path
(``nnbasics.fused``) can compile the very same math instead of copying it.
User-facing validation, autocast and ``inplace`` live in ``nnbasics.functional``.

The same names mean the same things in every file:

- ``<op>_forward``: exactly what ``Function.forward`` returns;
- ``<op>_derivative_times(v, ...)``: v · dy/dx for an elementwise op, which backward
  uses with v = grad_y and jvp with v = the tangent;
- ``<loss>_unreduced``: the loss l of every element (every row, for cross-entropy),
  which ``_reduction.reduce`` turns into the loss L;
- ``<loss>_partials``: the partial derivatives of l with respect to each input;
- ``<op>_backward`` / ``<op>_jvp``: the vector-Jacobian and Jacobian-vector products,
  where they are more than a product with ``_derivative_times``.

What each Function saves for backward is part of its design, and the rule is in the files:
an activation whose derivative can be read off its output saves the output, which the next
layer keeps anyway (``relu.py``); where dropout follows, a single 1-byte mask for both ops
is cheaper (``activation_dropout.py``).
"""
from ._layout import ContiguousGrad
from .activation_dropout import ActivationDropout
from .binary_cross_entropy import BinaryCrossEntropy, BinaryCrossEntropyWithLogits
from .cross_entropy import CrossEntropy
from .dropout import Dropout
from .hardtanh import Hardtanh
from .leaky_relu import LeakyReLU
from .linear import Linear
from .mse_loss import MSELoss
from .relu import ReLU
from .sigmoid import Sigmoid
from .soft_cross_entropy import SoftCrossEntropy
from .softmax import LogSoftmax, Softmax
from .tanh import Tanh

__all__ = [
    "ActivationDropout", "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "ContiguousGrad", "CrossEntropy", "Dropout",
    "Hardtanh", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "ReLU", "Sigmoid", "SoftCrossEntropy", "Softmax", "Tanh",
]

