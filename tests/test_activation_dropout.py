"""ops.ActivationDropout (activation + dropout in one op, used by nn.MLP) against the composition of
the built-in activation and nnbasics' dropout: same output, same gradients, same random draws; gradcheck, gradgradcheck, forward AD,
torch.func; and what it saves (one 1-byte mask)."""
import pytest
import torch
import torch.nn.functional as TF
from torch.autograd import gradcheck, gradgradcheck
from torch.func import grad, jvp

import nnbasics.functional as F
from nnbasics import nn as nnb
from nnbasics.testing import compare

CASES = [("relu", (), {}), ("leaky_relu", (0.2,), {"negative_slope": 0.2}), ("leaky_relu", (0.0,), {"negative_slope": 0.0}),
         ("hardtanh", (-1.0, 1.0), {}), ("hardtanh", (-0.5, 2.0), {"min_val": -0.5, "max_val": 2.0})]
IDS = [f"{name}{params}" for name, params, _ in CASES]


def ours(x, name, params, p, impl="custom"):
    z, _mask = F._apply(F.implementation(impl).ActivationDropout, x, name, p, params)
    return z


def _edges(device, dtype):
    """Random values, the kinks exactly, NaN and infinities."""
    special = torch.tensor([0.0, -0.0, -1.0, 1.0, -0.5, 2.0, float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    return torch.cat([torch.randn(200, dtype=torch.float64), special.repeat(20)]).to(device, dtype).reshape(20, -1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,params,kw", CASES, ids=IDS)
@pytest.mark.parametrize("p", [0.3, 1.0])
def test_equals_the_builtins_composed(name, params, kw, p, dtype):
    """The same seed gives the same everything as torch's activation followed by nnbasics' dropout
    (whose draw is its own, ops/dropout.py)."""
    x = _edges("cpu", dtype)
    g = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    results = {}
    for which, fn in (("mine", lambda t: ours(t, name, params, p)), ("ref", lambda t: F.dropout(getattr(TF, name)(t, **kw), p))):
        xi = x.clone().requires_grad_()
        torch.manual_seed(7)
        z = fn(xi)
        results[which] = (z, *torch.autograd.grad(z, xi, g))
    if name == "hardtanh":
        # torch's own CPU hardtanh_backward is inconsistent at NaN: 0 in its vectorized loop, the
        # gradient passed in its scalar tail. nnbasics gives 0 everywhere (tests/test_numerics.py).
        nan = x.isnan()
        assert not results["mine"][1][nan].any()
        results = {k: (z, gx.masked_fill(nan, 0)) for k, (z, gx) in results.items()}
    for what, mine, ref in zip(("output", "grad"), results["mine"], results["ref"]):
        assert torch.equal(mine.isnan(), ref.isnan()), what
        result = compare(what, mine, ref)
        assert result.close if dtype == torch.bfloat16 else result.exact, str(result)


@pytest.mark.parametrize("name,params,kw", CASES, ids=IDS)
def test_fused_equals_the_fused_ops_composed(name, params, kw, device):
    """impl='fused' draws as the fused Dropout does (another stream than torch's), so it is compared with that."""
    x = _edges(device, torch.float32)
    g = torch.randn_like(x)
    results = {}
    for which, fn in (("mine", lambda t: ours(t, name, params, 0.3, "fused")),
                      ("ref", lambda t: F.dropout(getattr(F, name)(t, **kw, impl="fused"), 0.3, impl="fused"))):
        xi = x.clone().requires_grad_()
        torch.manual_seed(7)
        z = fn(xi)
        results[which] = (z, *torch.autograd.grad(z, xi, g))
    for mine, ref in zip(results["mine"], results["ref"]):
        assert torch.equal(mine.isnan(), ref.isnan()) and torch.equal(mine.nan_to_num(), ref.nan_to_num())


@pytest.mark.parametrize("name,params,kw", CASES, ids=IDS)
def test_gradcheck(name, params, kw, device, impl):
    x = torch.randn(6, 5, dtype=torch.float64, device=device)
    x = torch.where((x.abs() < 0.05) | ((x + 0.5).abs() < 0.05) | ((x - 1).abs() < 0.05) | ((x + 1).abs() < 0.05), 0.3, x)
    x.requires_grad_()

    def fn(t):
        torch.manual_seed(3)  # the same mask on every call, so finite differences make sense
        return ours(t, name, params, 0.4, impl)

    assert gradcheck(fn, (x,), check_forward_ad=True, check_batched_grad=True)
    assert gradgradcheck(fn, (x,), check_batched_grad=True)


@pytest.mark.parametrize("name,params,kw", CASES, ids=IDS)
def test_torch_func_grad_and_jvp(name, params, kw, impl):
    x, t = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)

    def seeded(fn):
        def run(v):
            torch.manual_seed(5)
            return fn(v)
        return run

    mine = seeded(lambda v: ours(v, name, params, 0.3, impl))
    ref = seeded(lambda v: F.dropout(getattr(F, name)(v, **kw, impl=impl), 0.3, impl=impl))
    # close, not exact: scale and slope are multiplied in another order
    assert compare("grad", grad(lambda v: mine(v).square().sum())(x), grad(lambda v: ref(v).square().sum())(x)).close
    (zm, tm), (zr, tr) = jvp(mine, (x,), (t,)), jvp(ref, (x,), (t,))
    assert compare("jvp primal", zm, zr).exact and compare("jvp", tm, tr).close


@pytest.mark.parametrize("name,params,kw", CASES, ids=IDS)
def test_saves_one_bool_mask_and_for_leaky_relu_its_own_output(name, params, kw, impl):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(64, 32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        z = ours(x, name, params, 0.2, impl)
    assert saved[0].dtype == torch.bool and saved[0].shape == x.shape
    if name == "leaky_relu":  # the sign of z: z is what the next layer keeps anyway
        assert len(saved) == 2 and saved[1].untyped_storage().data_ptr() == z.untyped_storage().data_ptr()
    else:
        assert len(saved) == 1


def test_refuses_what_it_cannot_do():
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="negative_slope=-0.1 < 0 is not supported"):
        ours(x, "leaky_relu", (-0.1,), 0.2)
    with pytest.raises(ValueError, match="activation='gelu' is not one of"):
        ours(x, "gelu", (), 0.2)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "hardtanh", "sigmoid", "tanh"])
def test_mlp_in_training_equals_its_builtin_twin(activation):
    """nn.MLP applies ActivationDropout in training: the same loss and gradients as torch.nn's layers
    with nnbasics' dropout (same draw) in place of torch.nn.Dropout."""
    torch.manual_seed(3)
    mine = nnb.MLP([12, 16, 8, 4], activation=activation, dropout=0.3).double()
    torch.manual_seed(3)
    ref = nnb.MLP([12, 16, 8, 4], activation=activation, dropout=0.3, impl="builtin").double()
    x, t = torch.randn(6, 12, dtype=torch.float64), torch.randint(0, 4, (6,))
    torch.manual_seed(11)
    lm = F.cross_entropy(mine(x), t)
    torch.manual_seed(11)
    h = x
    for layer in ref:
        h = F.dropout(h, layer.p) if isinstance(layer, torch.nn.Dropout) else layer(h)
    lr = TF.cross_entropy(h, t)
    assert compare("loss", lm, lr).close
    lm.backward(), lr.backward()
    for a, b in zip(mine.parameters(), ref.parameters()):
        assert compare("grad", a.grad, b.grad).close


def test_mlp_uses_the_combined_op_only_where_dropout_follows_in_training():
    saved = []

    def pack(t):
        saved.append(t.dtype)
        return t

    model = nnb.MLP([12, 16, 4], activation="relu", dropout=0.3)
    x = torch.randn(5, 12)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    assert saved.count(torch.bool) == 1  # one mask for relu and dropout together
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.eval()(x)
    assert torch.bool not in saved  # eval: no dropout; relu keeps its output


def test_compiled_mlp_with_dropout_has_no_graph_break():
    model = nnb.MLP([20, 16, 5], activation="leaky_relu", dropout=0.2)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(4, 20))
    assert explanation.graph_break_count == 0, explanation.break_reasons
