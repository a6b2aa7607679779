"""cross_entropy_ (nnbasics.fused.inplace): the gradient stored over the logits, with its caveats."""
import pytest
import torch
import torch.nn.functional as TF

from nnbasics.fused import inplace
from nnbasics.fused.inplace import cross_entropy_
from nnbasics.testing import compare


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


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_inplace_cross_entropy_all_rows_ignored(smoothing, weighted):
    """As in torch: the 'mean' of no rows is NaN, its gradient 0 (not NaN in every weight)."""
    w, x, t = _model_and_data()
    t[:] = -100
    cw = torch.linspace(0.5, 2.0, 7, dtype=torch.float64) if weighted else None
    results = []
    for fn in (cross_entropy_, TF.cross_entropy):
        w.grad = None
        loss = fn(x @ w.T, t, weight=cw, label_smoothing=smoothing)
        loss.backward()
        results.append((loss.detach(), w.grad.clone()))
    (mine, mine_grad), (ref, ref_grad) = results
    assert mine.isnan() and ref.isnan()
    assert torch.equal(ref_grad, torch.zeros_like(ref_grad)) and torch.equal(mine_grad, ref_grad)


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
    monkeypatch.setattr(inplace, "CHUNK_BYTES", 3 * 7 * 8)  # 3 rows per chunk
    w, x, t = _model_and_data()
    loss = cross_entropy_(x @ w.T, t, label_smoothing=0.1)
    loss.backward()
    g = w.grad.clone()
    w.grad = None
    TF.cross_entropy(x @ w.T, t, label_smoothing=0.1).backward()
    assert compare("chunked", g, w.grad).close
