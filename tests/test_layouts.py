"""Layouts: the hand-written ops take inputs and upstream gradients in every layout autograd and
users produce, give the values of the contiguous case, and return the layout the built-in returns.

The layouts, applied to the op's first input (the input) and, separately, to the upstream gradient:

- ``permuted``: all dimensions reversed (a transpose, in 2-D), as ``.t()``/``.permute`` give;
- ``expanded``: stride 0 along the first dimension, as ``sum()``'s backward gives;
- ``sliced``: a narrow window of a larger tensor (storage offset, gaps between rows), as
  ``cat``'s and ``split``'s backwards give.

Layouts are compared as the strides of the dimensions longer than 1 (``_layout``).
"""
import pytest
import torch

from nnbasics import functional as F
from nnbasics.testing import OPS, compare

LAYOUTS = ("permuted", "expanded", "sliced")


def relayout(t, layout):
    """``t``'s values in ``layout`` (a new tensor; requires_grad as ``t``)."""
    t = t.detach()
    n = t.dim()
    if layout == "permuted":
        rev = tuple(range(n - 1, -1, -1))
        out = t.permute(rev).contiguous().permute(rev)
    elif layout == "expanded":
        # equal rows: the values of an expanded tensor repeat along the expanded dimension
        out = t[:1].clone().expand(t.shape)
    else:
        big = torch.zeros(tuple(s + 3 for s in t.shape), dtype=t.dtype, device=t.device)
        out = big[tuple(slice(1, 1 + s) for s in t.shape)]
        out.copy_(t)
    return out


def _layout(t):
    return tuple(st for size, st in zip(t.shape, t.stride()) if size > 1) if t.numel() else ()


def _samples(op, device):
    """A few samples of every rank the op's registry entry has (no empty, already-strided or random ones)."""
    chosen, ranks = [], set()
    for s in op.samples(device, torch.float64, True):
        x = s.args[0]
        key = (x.dim(), "soft" in s.desc, s.kwargs.get("reduction"))
        if x.dim() >= 2 and x.numel() and "noncontig" not in s.desc and key not in ranks:
            ranks.add(key)
            chosen.append(s)
    return chosen


def _run(fn, args, kwargs, grad_out, seed):
    torch.manual_seed(seed)
    out = fn(*args, **kwargs)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    g = grad_out(out) if grad_out else torch.ones_like(out)
    grads = torch.autograd.grad(out, inputs, g, allow_unused=True) if out.requires_grad else []
    return out, list(grads)


def _leaf(t, layout=None):
    if not isinstance(t, torch.Tensor):
        return t
    x = relayout(t, layout) if layout else t.detach().clone()
    return x.requires_grad_(t.requires_grad)


def _cases():
    return [pytest.param(op, layout, id=f"{op.name}-{layout}") for op in OPS for layout in LAYOUTS]


@pytest.mark.parametrize("op,layout", _cases())
def test_input_layouts(op, layout, device, impl):
    """An input in ``layout``: the contiguous case's values, the built-in's layouts."""
    problems = []
    for s in _samples(op, device):
        contiguous = _run(op.custom(impl), [_leaf(a) for a in s.args], s.kwargs, None, 0)
        args = [_leaf(s.args[0], layout)] + [_leaf(a) for a in s.args[1:]]
        mine = _run(op.custom(impl), args, s.kwargs, None, 0)
        args = [_leaf(s.args[0], layout)] + [_leaf(a) for a in s.args[1:]]
        ref = _run(op.builtin, args, s.kwargs, None, 0)
        if layout == "expanded":  # the values differ from the contiguous case: compare with torch's
            contiguous = ref
        for what, m, c, r in [("output", mine[0], contiguous[0], ref[0])] + [
                (f"grad {i}", m, c, r) for i, (m, c, r) in enumerate(zip(mine[1], contiguous[1], ref[1]))]:
            if not compare(what, m, c).close:
                problems.append(f"{s.desc}: {what} values differ from the contiguous case")
            if _layout(m) != _layout(r):
                problems.append(f"{s.desc}: {what} strides {m.stride()}, built-in {r.stride()}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("op,layout", _cases())
def test_upstream_gradient_layouts(op, layout, device, impl):
    """grad_output in ``layout``: input gradients equal the contiguous case's, in the built-in's layout."""
    problems = []
    for s in _samples(op, device):
        def grad_out(out, layout=None):
            if out.dim() == 0:
                return torch.ones_like(out)
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype).to(out.device)
            if layout == "expanded":
                g = g[:1].expand(out.shape)
            return relayout(g, layout) if layout else g

        contiguous = _run(op.custom(impl), [_leaf(a) for a in s.args], s.kwargs,
                          lambda o: grad_out(o, "expanded" if layout == "expanded" else None).contiguous(), 0)
        mine = _run(op.custom(impl), [_leaf(a) for a in s.args], s.kwargs, lambda o: grad_out(o, layout), 0)
        ref = _run(op.builtin, [_leaf(a) for a in s.args], s.kwargs, lambda o: grad_out(o, layout), 0)
        for i, (m, c, r) in enumerate(zip(mine[1], contiguous[1], ref[1])):
            if not compare(f"grad {i}", m, c).close:
                problems.append(f"{s.desc}: grad {i} values differ from the contiguous case")
            if _layout(m) != _layout(r):
                problems.append(f"{s.desc}: grad {i} strides {m.stride()}, built-in {r.stride()}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("x_layout,w_layout", [("row", "column"), ("column", "column"), ("column", "row")])
def test_linear_gradients_keep_the_layouts_torchs_matrix_product_keeps(x_layout, w_layout, device, impl):
    """A column-major input or a weight that is not row-major (a transposed matrix) gets its gradient
    in that layout, as torch's mm backward gives it; same values as the contiguous case."""
    def matrix(shape, layout):
        m = torch.randn(shape, dtype=torch.float64, device=device)
        return (m.t().contiguous().t() if layout == "column" else m).requires_grad_()

    x, w, b = matrix((6, 4), x_layout), matrix((3, 4), w_layout), torch.randn(3, dtype=torch.float64, device=device)
    g = torch.randn(6, 3, dtype=torch.float64, device=device)
    mine = torch.autograd.grad(F.linear(x, w, b, impl=impl), (x, w), g)
    ref = torch.autograd.grad(torch.nn.functional.linear(x, w, b), (x, w), g)
    for name, m, r in zip(("grad_input", "grad_weight"), mine, ref):
        assert compare(name, m, r).close
        assert m.stride() == r.stride(), (name, m.stride(), r.stride())
