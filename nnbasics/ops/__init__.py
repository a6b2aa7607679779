"""The hand-written autograd Functions, one file per op.

Each file states the forward and backward math in its docstring, then holds
the formulas as plain functions and the ``torch.autograd.Function`` that wires
them into autograd, in plain public torch. The formulas are kept as functions so the
fast path (``nnbasics.fused``) can compile the very same math instead of copying it.
User-facing validation and reshaping live in ``nnbasics.functional``; a Function's
``autocast`` attribute says how ``torch.autocast`` casts its inputs (none: they keep their
dtype), and the ``ReLU_``-style classes are the in-place variants (``ctx.mark_dirty``).

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
from .dropout import Dropout, Dropout_
from .hardtanh import Hardtanh, Hardtanh_
from .leaky_relu import LeakyReLU, LeakyReLU_
from .linear import Linear
from .mse_loss import MSELoss
from .relu import ReLU, ReLU_
from .sigmoid import Sigmoid
from .soft_cross_entropy import SoftCrossEntropy
from .softmax import LogSoftmax, Softmax
from .tanh import Tanh

__all__ = [
    "ActivationDropout", "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "ContiguousGrad", "CrossEntropy", "Dropout",
    "Dropout_", "Hardtanh", "Hardtanh_", "LeakyReLU", "LeakyReLU_", "Linear", "LogSoftmax", "MSELoss", "ReLU", "ReLU_",
    "Sigmoid", "SoftCrossEntropy", "Softmax", "Tanh",
]

