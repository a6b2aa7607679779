"""Dropout's draws keep dropout exact: each element is kept with probability 1 - p' and scaled by
1 / (1 - p'), so E[output] = input. The textbook (ops/dropout.py) compares a float32 uniform number
with p (p' = p, up to float32's 2⁻²⁴ resolution); the fast path (fused/dropout.py) compares 16
random bits with a threshold (p' = drawn_p(p), a multiple of 2⁻¹⁶). Checked on 2²⁴ elements, for
Dropout and ActivationDropout, custom and fused.

The seed is fixed, so these tests give the same answer on every run (they cannot flake); the
tolerance is 5 binomial standard deviations, √(q(1 - q)/n) ≈ 1e-4 here, small enough to fail for
a draw whose keep rate is off by 2⁻⁸ (an 8-bit draw used with the scale 1/(1 - p)), or for four
integers cut from one random number of which one is biased (a sign bit that is always 0)."""
import math

import pytest
import torch

import nnbasics.functional as F
from nnbasics.fused.dropout import drawn_p

N = 1 << 24
SIGMAS = 5


def _dropout(x, p, impl):
    return F.dropout(x, p, impl=impl)


def _relu_dropout(x, p, impl):
    z, _mask = F._apply(F.implementation(impl).ActivationDropout, x, "relu", float(p), ())
    return z


def _used_p(p, impl):
    """The drop probability the draw of ``impl`` uses."""
    return drawn_p(p) if impl == "fused" else p


@pytest.mark.parametrize("op", [_dropout, _relu_dropout], ids=["Dropout", "ActivationDropout"])
@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_keep_rate_and_mean_on_large_tensors(op, p, impl):
    torch.manual_seed(0)
    x = torch.ones(N)  # relu(1) = 1: ActivationDropout's output is dropout's
    y = op(x, p, impl)
    q = 1 - _used_p(p, impl)  # the keep probability the draw uses
    assert abs(drawn_p(p) - p) <= 2 ** -17
    kept = y != 0
    scale = 1 / q
    assert torch.equal(y[kept], torch.full_like(y[kept], scale))  # kept elements carry exactly 1/q
    std = math.sqrt(q * (1 - q) / N)
    rate = kept.double().mean().item()
    assert abs(rate - q) < SIGMAS * std, (rate, q, std)
    # E[y] = x = 1: the mean of y is rate/q, whose standard deviation is std/q
    assert abs(y.double().mean().item() - 1) < SIGMAS * std / q
    # the fast path cuts four 16-bit integers from each 64-bit random number: each is uniform
    for i, r in enumerate(kept.view(-1, 4).double().mean(0).tolist()):
        assert abs(r - q) < SIGMAS * 2 * std, (i, r, q)  # n/4 elements each: twice the std


def test_gradient_uses_the_same_mask_and_scale(impl):
    torch.manual_seed(1)
    x = torch.ones(1 << 16, requires_grad=True)
    y = F.dropout(x, 0.3, impl=impl)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, y.detach())  # d(x·m/(1-p'))/dx = m/(1-p') = y when x = 1


def test_drawn_p_is_p_on_the_grid_and_below_1_unless_p_is_1():
    assert [drawn_p(p) for p in (0.0, 0.5, 0.25, 2 ** -16, 1.0)] == [0.0, 0.5, 0.25, 2 ** -16, 1.0]
    assert drawn_p(1 - 2 ** -20) == 1 - 2 ** -16  # some element is still kept, scaled by 2¹⁶
    assert drawn_p(2 ** -20) == 0.0  # rounds to no dropout at all: exact, scale 1
    x = torch.ones(1000)
    for impl in ("custom", "fused"):
        assert torch.equal(F.dropout(x, 1.0, impl=impl), torch.zeros(1000))
    assert torch.equal(F.dropout(x, 2 ** -20, impl="fused"), x)
