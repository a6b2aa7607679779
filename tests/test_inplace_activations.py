"""inplace=True for relu, leaky_relu, hardtanh and dropout: the input itself is returned, holding
the built-in's values; gradients are the built-in's; and nothing is saved beside the tensor the
next layer keeps (the ReLU_-style Functions of nnbasics.ops and nnbasics.fused)."""
import pytest
import torch
import torch.nn.functional as TF

from benchmarks import common
from nnbasics import functional as F
from nnbasics.testing import compare

ACTIVATIONS = {"relu": (), "leaky_relu": (0.1,), "hardtanh": (-0.5, 0.5), "dropout": (0.3,)}


def _chain(act, x, w1, w2, seed=1):
    """Linear → act (in place) → Linear → a scalar; returns the loss and the activation's result
    and the tensor it was given."""
    torch.manual_seed(seed)
    h = x @ w1.t()
    out = act(h)
    return (out @ w2.t()).square().sum(), out, h


def _weights(dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(shape, generator=g, dtype=dtype).to(device).requires_grad_(i > 0)
                 for i, shape in enumerate([(8, 5), (6, 5), (3, 6)]))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_in_place_returns_the_input_with_torchs_values_and_gradients(name, impl, device):
    args = ACTIVATIONS[name]
    x, w1, w2 = _weights(device=device)
    results = []
    for act in (lambda h: getattr(F, name)(h, *args, inplace=True, impl=impl),
                lambda h: getattr(TF, name)(h, *args, inplace=True)):
        loss, out, h = _chain(act, x, w1, w2)
        assert out is h
        results.append((out.detach().clone(), torch.autograd.grad(loss, (w1, w2))))
    if name == "dropout":  # nnbasics' dropout draws its own mask (ops/dropout.py)
        mine, _ = results[0]
        kept = mine != 0
        assert 0 < kept.sum() < kept.numel()
        return
    (mine, mine_grads), (ref, ref_grads) = results
    assert compare("output", mine, ref).close
    for i, (m, r) in enumerate(zip(mine_grads, ref_grads)):
        assert compare(f"grad {i}", m, r).close


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_in_place_saves_no_more_than_the_builtin(name, impl, device):
    """Linear → act(inplace=True) → Linear: unique bytes saved for backward ≤ the built-in's
    (before, the out-of-place result was kept beside the overwritten input)."""
    args = ACTIVATIONS[name]
    x, w1, w2 = _weights(torch.float32, device)
    mine = common.saved_tensor_bytes(lambda: _chain(lambda h: getattr(F, name)(h, *args, inplace=True, impl=impl),
                                                    x, w1, w2)[0])
    ref = common.saved_tensor_bytes(lambda: _chain(lambda h: getattr(TF, name)(h, *args, inplace=True), x, w1, w2)[0])
    assert mine.unique <= ref.unique, (mine.unique, ref.unique)


def test_leaky_relu_in_place_with_a_negative_slope_gives_the_out_of_place_gradient(impl):
    """torch refuses it in backward (its input is gone); here the op works on a copy it keeps."""
    x, w1, w2 = _weights()
    loss, _, _ = _chain(lambda h: F.leaky_relu(h, -0.2, inplace=True, impl=impl), x, w1, w2)
    mine = torch.autograd.grad(loss, (w1, w2))
    loss, _, _ = _chain(lambda h: TF.leaky_relu(h, -0.2), x, w1, w2)
    for m, r in zip(mine, torch.autograd.grad(loss, (w1, w2))):
        assert compare("grad", m, r).close


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bounds", [(-0.7, 0.7), (0.3, 0.31), (-1.0, 1.0)])
def test_hardtanh_in_place_on_every_value_of_a_half_dtype(dtype, bounds):
    """Every finite value, with bounds that are (±1) and are not (0.7, 0.31) values of the dtype:
    the same outputs and gradients as torch's hardtanh_."""
    every = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    every = every[torch.isfinite(every)]
    results = []
    for act in (lambda h: F.hardtanh(h, *bounds, inplace=True), lambda h: TF.hardtanh(h, *bounds, inplace=True)):
        x = every.float().requires_grad_()
        out = act(x.to(dtype))
        results.append((out.float(), torch.autograd.grad(out.float().sum(), x)[0]))
    (mine, mine_grad), (ref, ref_grad) = results
    assert torch.equal(mine, ref)
    assert torch.equal(mine_grad, ref_grad)


def test_in_place_under_torch_func_and_compile(impl):
    """Inside transforms and torch.compile the result is computed out of place and copied."""
    x = torch.randn(4, 3)
    expected = torch.func.grad(lambda t: TF.relu(t.clone(), inplace=True).square().sum())(x)
    got = torch.func.grad(lambda t: F.relu(t.clone(), inplace=True, impl=impl).square().sum())(x)
    assert compare("grad", got, expected).close
    got = torch.vmap(lambda t: F.leaky_relu(t.clone(), 0.1, inplace=True, impl=impl))(x)
    assert compare("vmap", got, TF.leaky_relu(x, 0.1)).close
    compiled = torch.compile(lambda t: F.hardtanh(t * 2, inplace=True, impl=impl), backend="aot_eager", fullgraph=True)
    assert compare("compiled", compiled(x), TF.hardtanh(x * 2)).close


def test_in_place_on_a_leaf_that_requires_grad_is_refused_like_torchs():
    for fn in (lambda t: F.relu(t, inplace=True), lambda t: TF.relu(t, inplace=True)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            fn(torch.randn(3, requires_grad=True))
