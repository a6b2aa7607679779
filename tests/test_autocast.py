"""Under torch.autocast the hand-written ops are cast like the built-ins: linear runs in the low
precision dtype, losses in float32, elementwise ops in their input's dtype."""
import pytest
import torch

import nnbasics.functional as F
from nnbasics.testing import OPS, compare

CASES = [("cpu", torch.bfloat16)] + [
    pytest.param("cuda", dt, marks=pytest.mark.cuda)
    for dt in (torch.float16, torch.bfloat16)
]


def _run(fn, sample, device, dtype):
    args = tuple(a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in sample.args)
    with torch.autocast(device, dtype=dtype):
        out = fn(*args, **sample.kwargs)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = torch.autograd.grad(out.float().sum(), inputs) if out.requires_grad else ()
    return out, grads


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_autocast_matches_builtin(op, device, dtype, impl):
    for sample in op.samples(device, torch.float32, True)[:4]:
        if op.random:
            torch.manual_seed(0)
        if op.name == "binary_cross_entropy" and device == "cuda":
            with pytest.raises(RuntimeError, match="unsafe to autocast"), torch.autocast(device, dtype=dtype):
                F.binary_cross_entropy(*sample.args, **sample.kwargs)
            continue
        mine, mine_grads = _run(op.custom(impl), sample, device, dtype)
        if op.random:
            torch.manual_seed(0)
        ref, ref_grads = _run(op.builtin, sample, device, dtype)
        assert mine.dtype == ref.dtype, f"{op.name}[{sample.desc}]: {mine.dtype} vs built-in {ref.dtype}"
        if op.random and device != "cpu":
            continue
        rtol = atol = 2e-2 if ref.dtype != torch.float32 else 1e-4
        assert compare(op.name, mine, ref, rtol=rtol, atol=atol).close, sample.desc
        for gm, gr in zip(mine_grads, ref_grads):
            assert gm.dtype == gr.dtype
            assert compare(op.name + " grad", gm, gr, rtol=3e-2, atol=3e-2).close, sample.desc


def test_linear_computes_in_low_precision_and_loss_in_float32():
    x, w = torch.randn(8, 16), torch.randn(4, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = F.linear(x, w)
        loss = F.cross_entropy(y, torch.zeros(8, dtype=torch.long))
    assert y.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert w.grad.dtype == torch.float32  # the parameter keeps its dtype; the cast is differentiable
