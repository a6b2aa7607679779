"""Drop-in twins of ``torch.nn`` modules, computed by the hand-written ops.

Each class subclasses its ``torch.nn`` namesake and replaces only ``forward``:
constructor arguments, parameter names and shapes, initialisation
(``reset_parameters``), ``state_dict`` keys and ``repr`` are PyTorch's own, so
weights move between the two with ``load_state_dict`` and the same seed gives
the same initial weights. ``isinstance(m, torch.nn.Linear)`` stays true.

Every module takes one extra keyword-only argument, ``impl`` ("custom" or
"fused"), passed through to ``nnbasics.functional``.
"""
import itertools
from collections import OrderedDict

import torch
from torch import nn

from . import functional as F

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "hardtanh")
INITS = ("torch", "kaiming", "xavier")
MLP_IMPLS = (*F.IMPLS, "builtin")  # "builtin": the same network from torch.nn modules

__all__ = [
    "Linear", "Sigmoid", "ReLU", "Tanh", "LeakyReLU", "Hardtanh", "Softmax", "LogSoftmax", "Dropout",
    "CrossEntropyLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "MLP", "ActivationDropout",
]


class _Impl:
    """Mixin: remembers ``impl`` (validated once, at construction)."""

    def _set_impl(self, impl: str):
        F.implementation(impl)
        self.impl = impl


class Linear(_Impl, nn.Linear):
    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *, impl="custom"):
        super().__init__(in_features, out_features, bias, device, dtype)
        self._set_impl(impl)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias, impl=self.impl)


class Sigmoid(_Impl, nn.Sigmoid):
    def __init__(self, *, impl="custom"):
        super().__init__()
        self._set_impl(impl)

    def forward(self, input):
        return F.sigmoid(input, impl=self.impl)


class Tanh(_Impl, nn.Tanh):
    def __init__(self, *, impl="custom"):
        super().__init__()
        self._set_impl(impl)

    def forward(self, input):
        return F.tanh(input, impl=self.impl)


class ReLU(_Impl, nn.ReLU):
    def __init__(self, inplace=False, *, impl="custom"):
        super().__init__(inplace)
        self._set_impl(impl)

    def forward(self, input):
        return F.relu(input, self.inplace, impl=self.impl)


class LeakyReLU(_Impl, nn.LeakyReLU):
    def __init__(self, negative_slope=0.01, inplace=False, *, impl="custom"):
        super().__init__(negative_slope, inplace)
        self._set_impl(impl)

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace, impl=self.impl)


class Hardtanh(_Impl, nn.Hardtanh):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False, min_value=None, max_value=None, *, impl="custom"):
        super().__init__(min_val, max_val, inplace, min_value, max_value)
        self._set_impl(impl)

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace, impl=self.impl)


class Softmax(_Impl, nn.Softmax):
    def __init__(self, dim=None, *, impl="custom"):
        super().__init__(dim)
        self._set_impl(impl)

    def forward(self, input):
        return F.softmax(input, self.dim, _stacklevel=5, impl=self.impl)


class LogSoftmax(_Impl, nn.LogSoftmax):
    def __init__(self, dim=None, *, impl="custom"):
        super().__init__(dim)
        self._set_impl(impl)

    def forward(self, input):
        return F.log_softmax(input, self.dim, _stacklevel=5, impl=self.impl)


class Dropout(_Impl, nn.Dropout):
    def __init__(self, p=0.5, inplace=False, *, impl="custom"):
        super().__init__(p, inplace)
        self._set_impl(impl)

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace, impl=self.impl)


class CrossEntropyLoss(_Impl, nn.CrossEntropyLoss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, impl="custom"):
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self._set_impl(impl)

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing, impl=self.impl)


class MSELoss(_Impl, nn.MSELoss):
    def __init__(self, size_average=None, reduce=None, reduction="mean", *, impl="custom"):
        super().__init__(size_average, reduce, reduction)
        self._set_impl(impl)

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction, impl=self.impl)


class BCELoss(_Impl, nn.BCELoss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *, impl="custom"):
        super().__init__(weight, size_average, reduce, reduction)
        self._set_impl(impl)

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction, impl=self.impl)


class BCEWithLogitsLoss(_Impl, nn.BCEWithLogitsLoss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None,
                 *, impl="custom"):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self._set_impl(impl)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight, impl=self.impl)


_ACTIVATION_CLASSES = {
    "relu": (ReLU, nn.ReLU),
    "sigmoid": (Sigmoid, nn.Sigmoid),
    "tanh": (Tanh, nn.Tanh),
    "leaky_relu": (LeakyReLU, nn.LeakyReLU),
    "hardtanh": (Hardtanh, nn.Hardtanh),
}


class ActivationDropout(nn.Module):
    """An activation module followed by a ``Dropout`` module, applied as one op in training:
    ``ops.ActivationDropout`` (or ``fused.ActivationDropout``), which keeps a single 1-byte mask for
    both (same values, gradients and random draws as the two modules). Not a ``torch.nn`` twin:
    ``MLP`` uses it, because it knows that dropout follows the activation, which a lone op cannot.

    The two modules are its children (``activation``, ``dropout``): in evaluation it calls the
    activation module (dropout is then the identity), with its hooks.
    """

    def __init__(self, activation, dropout):
        super().__init__()
        self.activation, self.dropout = activation, dropout

    def forward(self, input):
        if not self.training:
            return self.activation(input)
        name, params = _fusable(self.activation)
        z, _mask = F._apply(F.implementation(self.dropout.impl).ActivationDropout, input, name,
                            float(self.dropout.p), params)
        return z


def _fusable(layer):
    """(name, parameters) of an activation module that ``ops.ActivationDropout`` covers, else None."""
    if isinstance(layer, ReLU):
        return "relu", ()
    if isinstance(layer, LeakyReLU) and layer.negative_slope >= 0:
        return "leaky_relu", (float(layer.negative_slope),)
    if isinstance(layer, Hardtanh):
        return "hardtanh", (float(layer.min_val), float(layer.max_val))
    return None


class MLP(nn.Sequential):
    """A multi-layer perceptron: Linear → activation (→ Dropout) for each hidden layer, then Linear.

    ``sizes`` = (in, hidden..., out), e.g. (784, 1024, 1024, 10). ``impl="builtin"`` builds the same
    network from ``torch.nn`` modules: same layers, same ``state_dict`` keys, and, from the same seed,
    the same initial weights. ``init``: "torch" keeps PyTorch's default (Kaiming-uniform, a=√5);
    "kaiming" is Kaiming-normal for the activation with zero biases; "xavier" is Xavier-uniform with
    the activation's gain and zero biases. The state_dict loads into a plain ``torch.nn.Sequential``
    of the same layers (see ``MLP.builtin_twin``).

    What is saved for backward: an MLP knows that Dropout follows each activation, which a lone
    op cannot. There nobody else keeps the activation's output, so ReLU, LeakyReLU or Hardtanh and
    the Dropout after it are one module, ``ActivationDropout``, which keeps a single 1-byte mask
    for both in training. It stands where the activation stands in the built-in network, and the
    layers keep the built-in's names ("0", "1", "3", ...: the Dropout's name is not used), so the
    state_dict keys are the same. Without dropout each activation keeps its output, which the next
    Linear keeps anyway. ``benchmarks.saved`` measures both against the built-in.
    """

    def __init__(self, sizes, activation="relu", dropout=0.0, impl="custom", init="torch", device=None, dtype=None):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP: sizes={sizes} must list at least an input and an output size, all >= 1")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: activation={activation!r} is unknown; use one of {ACTIVATIONS}")
        F.implementation(impl, MLP_IMPLS)
        if init not in INITS:
            raise ValueError(f"MLP: init={init!r} is unknown; use one of {INITS}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout={dropout} must be in [0, 1)")
        builtin = impl == "builtin"
        kw = {} if builtin else {"impl": impl}
        linear_cls = nn.Linear if builtin else Linear
        act_cls = _ACTIVATION_CLASSES[activation][1 if builtin else 0]
        dropout_cls = nn.Dropout if builtin else Dropout
        layers = []  # (name, module): named by position in the built-in network
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(linear_cls(fan_in, fan_out, device=device, dtype=dtype, **kw))
            if i < len(sizes) - 2:
                layers.append(act_cls(**kw))
                if dropout > 0:
                    layers.append(dropout_cls(dropout, **kw))
                    if not builtin and _fusable(layers[-2]):
                        layers[-2:] = [ActivationDropout(*layers[-2:]), None]
        super().__init__(OrderedDict((str(i), m) for i, m in enumerate(layers) if m is not None))
        self.sizes, self.activation, self.dropout, self.impl, self.init = sizes, activation, dropout, impl, init
        if init != "torch":
            self._init_weights(init)

    @torch.no_grad()
    def _init_weights(self, init):
        nonlinearity = "leaky_relu" if self.activation == "leaky_relu" else self.activation
        if nonlinearity == "hardtanh":
            nonlinearity = "tanh"
        for layer in self:
            if isinstance(layer, nn.Linear):
                if init == "kaiming":
                    nn.init.kaiming_normal_(layer.weight, a=0.01, nonlinearity=nonlinearity)
                else:
                    nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(nonlinearity, 0.01))
                nn.init.zeros_(layer.bias)

    def forward(self, input):
        return super().forward(input.flatten(1) if input.dim() > 2 else input)

    def builtin_twin(self):
        """A plain ``torch.nn`` MLP with this architecture (weights not copied; use ``load_state_dict``)."""
        return MLP(self.sizes, self.activation, self.dropout, impl="builtin")

    def extra_repr(self):
        return f"sizes={self.sizes}, activation={self.activation!r}, impl={self.impl!r}"
