"""Extremes: overflow, huge logits, NaN, and the conventions at kinks."""
import warnings

import pytest
import torch
import torch.nn.functional as TF

import nnbasics.functional as F
from nnbasics.testing import compare


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_sigmoid_saturates_exactly_without_warnings(device, dtype, impl):
    x = torch.tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], device=device, dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # overflow warnings are RuntimeWarnings
        y = F.sigmoid(x, impl=impl)
        y.sum().backward()
    assert y[0].item() == 0.0 and y[-1].item() == 1.0 and y[2].item() == 0.5
    assert torch.isfinite(x.grad).all()
    assert compare("sigmoid", y, torch.sigmoid(x)).close


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_of_huge_logits_is_finite_and_matches(device, name, impl):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4 - 1]], device=device, requires_grad=True)
    mine, ref = getattr(F, name)(x, dim=1, impl=impl), getattr(TF, name)(x, dim=1)
    assert torch.isfinite(mine).all()
    assert compare(name, mine, ref).close
    g = torch.randn_like(mine)
    assert compare(f"{name} grad", torch.autograd.grad(mine, x, g)[0], torch.autograd.grad(ref, x, g)[0]).close


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_of_huge_logits(device, smoothing, impl):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], device=device, requires_grad=True)
    t = torch.tensor([1, 1], device=device)
    mine = F.cross_entropy(x, t, label_smoothing=smoothing, impl=impl)
    ref = TF.cross_entropy(x, t, label_smoothing=smoothing)
    assert torch.isfinite(mine) and compare("ce", mine, ref).close
    gm, gr = torch.autograd.grad(mine, x)[0], torch.autograd.grad(ref, x)[0]
    assert torch.isfinite(gm).all() and compare("ce grad", gm, gr).close


def test_bce_with_logits_is_stable_where_the_naive_form_is_not(device, impl):
    x = torch.tensor([-200.0, -30.0, 0.0, 30.0, 200.0], device=device, requires_grad=True)
    y = torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0], device=device)
    mine = F.binary_cross_entropy_with_logits(x, y, reduction="none", impl=impl)
    ref = TF.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert torch.isfinite(mine).all() and compare("bcel", mine, ref).close
    assert mine[0].item() == pytest.approx(200.0)


def test_bce_clamps_the_log_at_minus_100_like_torch():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mine = F.binary_cross_entropy(p, y, reduction="none")
    assert mine.tolist() == [100.0, 100.0, 0.0, 0.0]
    assert compare("bce", mine, TF.binary_cross_entropy(p, y, reduction="none")).close


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "hardtanh", "softmax", "log_softmax"])
def test_nan_propagates_like_the_builtin(name, impl):
    x = torch.tensor([[1.0, float("nan"), -2.0, 0.3]], requires_grad=True)
    kw = {"dim": 1} if "softmax" in name else {}
    mine, ref = getattr(F, name)(x, **kw, impl=impl), getattr(TF, name)(x, **kw)
    assert compare(name, mine, ref).exact or compare(name, mine, ref).close
    assert mine.isnan().tolist() == ref.isnan().tolist()
    g = torch.ones_like(mine)
    gm, gr = torch.autograd.grad(mine, x, g)[0], torch.autograd.grad(ref, x, g)[0]
    assert gm.isnan().tolist() == gr.isnan().tolist()


@pytest.mark.parametrize("name,kinks", [("relu", [0.0]), ("leaky_relu", [0.0]), ("hardtanh", [-1.0, 1.0])])
def test_gradient_at_the_kink_follows_pytorch(name, kinks, impl):
    x = torch.tensor(kinks + [0.5], requires_grad=True)
    gm = torch.autograd.grad(getattr(F, name)(x, impl=impl).sum(), x)[0]
    gr = torch.autograd.grad(getattr(TF, name)(x).sum(), x)[0]
    assert gm.tolist() == gr.tolist()
    if name == "relu":
        assert gm[0].item() == 0.0


def test_activations_save_their_output_and_linear_no_unneeded_tensor(impl):
    """relu, leaky_relu (slope >= 0) and hardtanh save their output y, the very tensor the next
    layer saves: the storage is shared, so the activation's saved tensor costs nothing. The fast
    path's leaky_relu saves its input x instead, as the built-in does (docs/fused.md)."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(16, 32, requires_grad=True)
    for act in (F.relu, F.leaky_relu, F.hardtanh):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = act(x, impl=impl)
            F.linear(y, w, impl=impl)
        s = x if impl == "fused" and act is F.leaky_relu else y
        assert [t.untyped_storage().data_ptr() for t in saved[:2]] == [s.untyped_storage().data_ptr(),
                                                                      y.untyped_storage().data_ptr()]
        assert saved[0].dtype == torch.float32 and saved[0].shape == x.shape

    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.leaky_relu(x, -0.2, impl=impl)  # a negative slope: y does not tell x's sign; x is saved, as torch does
    assert saved[0] is x or saved[0].untyped_storage().data_ptr() == x.untyped_storage().data_ptr()

    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.linear(x.detach(), w, impl=impl)  # the input needs no grad: dL/dx is not computed, so W is not saved
    assert [(t.dtype, t.numel() * t.element_size()) for t in saved] == [(torch.float32, 64 * 32 * 4)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (-0.3, 0.7), (0.5, 0.5), (0.0, 6.0)])
def test_hardtanh_on_every_value_of_a_16_bit_dtype(dtype, bounds, impl):
    """Output and gradient equal torch's for all 65536 values, with bounds that are values of the dtype
    (the output is saved) and bounds that fall between two of them (x is saved: the output cannot tell)."""
    x = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype).clone()
    x = x[~x.isnan()].requires_grad_()  # torch's own gradient at NaN depends on the position (vectorized or not)
    mine, ref = F.hardtanh(x, *bounds, impl=impl), TF.hardtanh(x, *bounds)
    assert torch.equal(mine, ref)
    g = torch.ones_like(x)
    assert torch.equal(torch.autograd.grad(mine, x, g)[0], torch.autograd.grad(ref, x, g)[0])


def test_dropout_statistics_and_scaling(device, impl):
    x = torch.ones(200_000, device=device, requires_grad=True)
    y = F.dropout(x, 0.3, impl=impl)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, y.detach())  # d(x·m/(1-p))/dx = m/(1-p) = y when x = 1


def test_dropout_draws_the_same_mask_from_the_same_seed(impl):
    """Each impl draws its own way (ops/dropout.py: a uniform number per element; fused/dropout.py:
    16 random bits), and the same seed drops the same elements."""
    x = torch.randn(1000)
    torch.manual_seed(7)
    first = F.dropout(x, 0.4, impl=impl)
    torch.manual_seed(7)
    again = F.dropout(x, 0.4, impl=impl)
    assert torch.equal(first, again) and 0 < (first != 0).sum() < 1000


def test_inplace_writes_into_the_input_like_torch(impl):
    for name in ["relu", "leaky_relu", "hardtanh"]:
        base = torch.randn(10, requires_grad=True)
        x = base * 1.0
        out = getattr(F, name)(x, inplace=True, impl=impl)
        assert out is x
        assert torch.allclose(x, getattr(TF, name)(base))
        (g,) = torch.autograd.grad(out.sum(), base)
        assert torch.allclose(g, torch.autograd.grad(getattr(TF, name)(base).sum(), base)[0])
