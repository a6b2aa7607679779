"""What only the fused path has: its compiled kernels' fallbacks, and cross_entropy_ (gradient
stored over the logits) with its caveats. Parity of every fused op is in test_ops."""
import warnings

import pytest
import torch
import torch.nn.functional as TF
from torch._vmap_internals import _vmap

from nnbasics import fused
from nnbasics.fused import cross_entropy_
from nnbasics.testing import compare


def test_kernels_compile_only_tensors_with_storage():
    """Wrappers of vmap and grad, including the legacy vmap of gradcheck(check_batched_grad=True),
    go to the eager formula: tracing them fails ("meta converter nyi")."""
    seen = []

    def probe(t):
        seen.append(fused._plain(t))
        return t * 1

    x = torch.randn(3, 4)
    probe(x), probe(x.t()), probe(torch.nn.Parameter(x))
    _vmap(probe)(x)
    torch.func.vmap(probe)(x)
    torch.func.grad(lambda t: probe(t).sum())(x)
    assert seen == [True, True, True, False, False, False]


def test_batched_gradcheck_compiles_nothing_it_cannot():
    """Regression: check_batched_grad once made every fused backward warn and fall back for good."""
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.autograd.gradcheck(fused.Tanh.apply, (x,), check_batched_grad=True)
    assert not [w for w in caught if "nnbasics.fused" in str(w.message) and "RecompileLimit" not in str(w.message)]


def test_kernel_falls_back_for_the_kind_of_input_that_fails_to_compile():
    def double(x):
        if x.dim() == 3:
            torch._dynamo.graph_break()  # fullgraph=True makes this a compile error
        return x * 2

    k = fused.kernel(double)
    with torch.no_grad():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(k(torch.ones(2, 2)), torch.full((2, 2), 2.0))
        with pytest.warns(RuntimeWarning, match=r"compiling double failed for inputs \(\('cpu', torch.float32, 3\),\)"):
            assert torch.equal(k(torch.ones(2, 2, 2)), torch.full((2, 2, 2), 2.0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once per kind
            assert torch.equal(k(torch.ones(3, 1, 2)), torch.full((3, 1, 2), 2.0))
            assert torch.equal(k(torch.ones(5)), torch.full((5,), 2.0))
    assert k.fallbacks == {(("cpu", torch.float32, 3),)}


def _model_and_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (9,), generator=g)
    t[2] = -100
    return w, x, t


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_inplace_cross_entropy_matches_torch(reduction, smoothing, weighted):
    w, x, t = _model_and_data()
    cw = torch.linspace(0.5, 2.0, 7, dtype=torch.float64) if weighted else None
    upstream = torch.linspace(-1, 1, 9, dtype=torch.float64) if reduction == "none" else torch.tensor(1.5, dtype=torch.float64)
    results = []
    for fn in (cross_entropy_, TF.cross_entropy):
        w.grad = None
        loss = fn(x @ w.T, t, weight=cw, reduction=reduction, label_smoothing=smoothing)
        loss.backward(upstream)
        results.append((loss.detach(), w.grad.clone()))
    (lm, gm), (lr, gr) = results
    assert compare("loss", lm, lr).close and compare("grad", gm, gr).close


def test_inplace_cross_entropy_overwrites_the_logits_with_the_gradient():
    w, x, t = _model_and_data()
    logits = x @ w.T
    reference = logits.detach().clone().requires_grad_()
    version = logits._version
    cross_entropy_(logits, t, reduction="sum")
    (expected,) = torch.autograd.grad(TF.cross_entropy(reference, t, reduction="sum"), reference)
    assert logits._version > version
    assert compare("logits now hold dl/dx", logits.detach(), expected).close


def test_inplace_cross_entropy_backward_runs_once():
    w, x, t = _model_and_data()
    loss = cross_entropy_(x @ w.T, t)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward can run only once"):
        loss.backward()


def test_inplace_cross_entropy_is_caught_when_someone_saved_the_logits():
    w, x, t = _model_and_data()
    logits = x @ w.T
    other = (logits * logits).sum()  # mul saves logits for its backward
    loss = cross_entropy_(logits, t)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + other).backward()


def test_inplace_cross_entropy_refuses_what_it_cannot_overwrite():
    w, x, t = _model_and_data()
    with pytest.raises(RuntimeError, match="leaf tensor"):
        cross_entropy_(torch.randn(9, 7, requires_grad=True), t)
    with pytest.raises(RuntimeError, match="contiguous"):
        cross_entropy_((w @ x.T).T, t)  # a transposed view
    with pytest.raises(IndexError, match="target value 9"):
        cross_entropy_(x @ w.T, torch.full((9,), 9))


def test_inplace_cross_entropy_without_autograd_leaves_the_input_alone():
    w, x, t = _model_and_data()
    with torch.no_grad():
        logits = x @ w.T
        before = logits.clone()
        loss = cross_entropy_(logits, t)
    assert torch.equal(logits, before)
    assert compare("loss", loss, TF.cross_entropy(before, t)).close


def test_inplace_cross_entropy_in_chunks(monkeypatch):
    import nnbasics.fused as fused

    monkeypatch.setattr(fused, "CHUNK_BYTES", 3 * 7 * 8)  # 3 rows per chunk
    w, x, t = _model_and_data()
    loss = cross_entropy_(x @ w.T, t, label_smoothing=0.1)
    loss.backward()
    g = w.grad.clone()
    w.grad = None
    TF.cross_entropy(x @ w.T, t, label_smoothing=0.1).backward()
    assert compare("chunked", g, w.grad).close
