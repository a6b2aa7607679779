"""fused/masks.where_else_zero: torch.where(keep, v, 0) computed on v's bits where that is safe, and
the dropout draw's comparison computed with clamp: both must give exactly what the plain ops give."""
import pytest
import torch

from nnbasics.fused import dropout
from nnbasics.fused.masks import where_else_zero
from nnbasics.train import allocator

SPECIAL = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e-40, -3.5, 2.0]


def _values(dtype, layout):
    v = torch.randn(64, 48, generator=torch.Generator().manual_seed(0)).to(dtype)
    v[0, :len(SPECIAL)] = torch.tensor(SPECIAL).to(dtype)
    return v.t().contiguous().t() if layout == "column-major" else v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["contiguous", "column-major", "v column-major"])
@pytest.mark.parametrize("layout_of", ["keep", "v"])
def test_where_else_zero_is_torch_where_bit_for_bit(dtype, layout, layout_of):
    v = _values(dtype, "contiguous" if layout == "contiguous" else "column-major")
    keep = torch.rand(v.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    keep[0, :len(SPECIAL)] = torch.tensor([False, False, False, False, True, True, True, True])
    if layout == "column-major":
        keep = keep.t().contiguous().t()
    mine = where_else_zero(keep, v, layout_of=layout_of)
    ref = torch.where(keep, v, 0) if layout_of == "keep" else v.clone().masked_fill_(~keep, 0)
    assert mine.dtype == ref.dtype and mine.stride() == ref.stride()
    bits = {torch.float32: torch.int32, torch.float64: torch.int64}.get(dtype, torch.int16)
    assert torch.equal(mine.view(bits), ref.view(bits))  # NaN, inf and the sign of 0 included


def test_where_else_zero_stays_differentiable_where_autograd_records():
    v = torch.randn(8, 8, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(8, 8) < 0.5
    out = where_else_zero(keep, v)
    assert out.requires_grad
    (grad,) = torch.autograd.grad(out.sum(), v)
    assert torch.equal(grad, keep.to(grad.dtype))


@pytest.mark.parametrize("p", [0.0, 1e-6, 2 ** -16, 0.2, 0.5, 1 - 2 ** -16, 1.0])
def test_draw_keep_is_the_comparison_with_the_threshold(p):
    x = torch.empty(300, 301)  # an odd count: the last 64-bit number is used in part
    torch.manual_seed(5)
    keep = dropout.draw_keep(x, p)
    torch.manual_seed(5)
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((x.numel() + 3) // 4,), dtype=torch.int64)
    r = bits.view(torch.int16)[:x.numel()].view(x.shape)
    expected = r >= round(dropout.drawn_p(p) * 2 ** 16) - 2 ** 15 if p < 1 else torch.zeros(x.shape, dtype=torch.bool)
    assert keep.dtype == torch.bool and torch.equal(keep, expected)


def test_keep_freed_memory_answers_once_and_says_what_it_did():
    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() is first
    applied, why = first
    assert isinstance(applied, bool) and why
    assert allocator.status() == (why if applied else f"the C library's defaults ({why})")
