"""The hand-written autograd Functions, one file per op.

Each file states the forward and backward math in its docstring, then holds
the formulas as plain functions (``*_forward``, ``*_backward``) and the
``torch.autograd.Function`` that wires them into autograd. The formulas are
kept as functions so the fused path (``nnbasics.fused``) can compile the very
same math instead of copying it. User-facing validation, autocast and
``inplace`` live in ``nnbasics.functional``.
"""
import torch

from .binary_cross_entropy import BinaryCrossEntropy, BinaryCrossEntropyWithLogits
from .cross_entropy import CrossEntropy
from .dropout import Dropout
from .hardtanh import Hardtanh
from .leaky_relu import LeakyReLU
from .linear import Linear
from .mse_loss import MSELoss
from .relu import ReLU
from .sigmoid import Sigmoid
from .softmax import LogSoftmax, Softmax
from .tanh import Tanh

__all__ = [
    "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "CrossEntropy", "Dropout", "Hardtanh",
    "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "ReLU", "Sigmoid", "Softmax", "Tanh",
]


def without_jvp(fn):
    """The same Function minus its hand-written ``jvp``.

    TorchDynamo refuses to trace a Function that defines ``jvp`` (forward-mode
    AD is not supported under ``torch.compile``), so ``nnbasics.functional``
    applies this twin while compiling; eager code, ``torch.func.jvp`` and
    ``gradcheck(check_forward_ad=True)`` use the original.
    """
    return type(fn.__name__, (fn,), {"jvp": torch.autograd.Function.jvp, "__module__": fn.__module__})


COMPILABLE = {name: without_jvp(globals()[name]) for name in __all__}
