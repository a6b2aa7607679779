"""torch.func transforms (vmap, grad, jvp) through the hand-written ops agree with the built-ins."""
import pytest
import torch
import torch.nn.functional as TF
from torch.func import grad, jvp, vmap

import nnbasics.functional as F
from nnbasics.testing import compare

UNARY = ["sigmoid", "tanh", "relu", "leaky_relu", "hardtanh"]


def _close(name, a, b):
    r = compare(name, a, b)
    assert r.close, str(r)


@pytest.mark.parametrize("name", UNARY + ["softmax", "log_softmax"])
def test_vmap_grad_jvp_of_activations(name, impl, device):
    kw = {"dim": -1} if "softmax" in name else {}
    mine, ref = (lambda x: getattr(F, name)(x, **kw, impl=impl)), (lambda x: getattr(TF, name)(x, **kw))
    x = torch.randn(6, 5, dtype=torch.float64, device=device)
    _close(f"vmap {name}", vmap(mine)(x), vmap(ref)(x))
    _close(f"grad {name}", vmap(grad(lambda v: mine(v).square().sum()))(x), vmap(grad(lambda v: ref(v).square().sum()))(x))
    t = torch.randn_like(x)
    (ym, tm), (yr, tr) = jvp(mine, (x,), (t,)), jvp(ref, (x,), (t,))
    _close(f"jvp {name}", tm, tr)
    _close(f"jvp primal {name}", ym, yr)


def test_per_sample_gradients_of_linear_and_cross_entropy(impl, device):
    """The textbook use of vmap(grad): one gradient per example, targets batched too."""
    w = torch.randn(3, 4, dtype=torch.float64, device=device)
    b = torch.randn(3, dtype=torch.float64, device=device)
    x = torch.randn(8, 4, dtype=torch.float64, device=device)
    t = torch.randint(0, 3, (8,), device=device)

    def loss(lib, w, b, x, t):
        kw = {"impl": impl} if lib is F else {}
        return lib.cross_entropy(lib.linear(x[None], w, b, **kw), t[None], label_smoothing=0.1, **kw)

    mine = vmap(grad(lambda w, b, x, t: loss(F, w, b, x, t), argnums=(0, 1)), in_dims=(None, None, 0, 0))(w, b, x, t)
    ref = vmap(grad(lambda w, b, x, t: loss(TF, w, b, x, t), argnums=(0, 1)), in_dims=(None, None, 0, 0))(w, b, x, t)
    for m, r in zip(mine, ref):
        assert m.shape[0] == 8
        _close("per-sample grad", m, r)


@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy_with_logits", "binary_cross_entropy"])
def test_vmap_grad_of_pair_losses(name):
    x = torch.rand(6, 5, dtype=torch.float64) * 0.8 + 0.1
    y = torch.rand(6, 5, dtype=torch.float64)
    gm = vmap(grad(lambda a, b: getattr(F, name)(a, b), argnums=(0, 1)))(x, y)
    gr = vmap(grad(lambda a, b: getattr(TF, name)(a, b), argnums=(0, 1)))(x, y)
    for m, r in zip(gm, gr):
        _close(name, m, r)


def test_jvp_of_losses_and_linear():
    x = torch.randn(4, 5, dtype=torch.float64)
    t = torch.tensor([0, 4, 2, -100])
    tan = torch.randn_like(x)
    for lib_f, lib_r in [(F, TF)]:
        _, m = jvp(lambda v, lib=lib_f: lib.cross_entropy(v, t, label_smoothing=0.2), (x,), (tan,))
        _, r = jvp(lambda v, lib=lib_r: lib.cross_entropy(v, t, label_smoothing=0.2), (x,), (tan,))
        _close("jvp ce", m, r)
    w, dw = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    _, m = jvp(lambda a, b: F.linear(a, b), (x, w), (tan, dw))
    _, r = jvp(lambda a, b: TF.linear(a, b), (x, w), (tan, dw))
    _close("jvp linear", m, r)


def test_hessian_of_a_small_network():
    """Second derivatives through torch.func (forward-over-reverse) use both hand-written rules."""
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randint(0, 3, (5,))

    def net(lib, w):
        return lib.cross_entropy(lib.tanh(lib.linear(x, w.reshape(3, 4))), t)

    w = torch.randn(12, dtype=torch.float64)
    _close("hessian", torch.func.hessian(lambda w: net(F, w))(w), torch.func.hessian(lambda w: net(TF, w))(w))
