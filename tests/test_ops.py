"""Every registered op (nnbasics.testing.OPS) gets every check: gradcheck and gradgradcheck with
forward AD and batched gradients, and parity of output and input gradients with torch.nn.functional."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from nnbasics.testing import OPS, compare, run_both, tolerances


def _ids(ops):
    return [op.name for op in ops]


def _differentiable(sample):
    return [i for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor) and a.requires_grad]


def _as_function(op, sample, impl):
    """fn(*differentiable tensors) for gradcheck, with the rest of the sample fixed."""
    fn = op.custom(impl)
    idx = _differentiable(sample)

    def call(*tensors):
        args = list(sample.args)
        for i, t in zip(idx, tensors):
            args[i] = t
        # Class weights that require grad are rejected, as by torch; the sample's are constants.
        kwargs = {k: (v.detach() if isinstance(v, torch.Tensor) and k != "weight" or k == "pos_weight" else v)
                  for k, v in sample.kwargs.items()}
        if op.random:
            torch.manual_seed(1234)  # the same mask on every call, so finite differences make sense
        return fn(*args, **kwargs)

    return call, tuple(sample.args[i] for i in idx)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_gradcheck(op, device, impl):
    """First and second derivatives against finite differences, in float64, for every sample;
    forward-mode AD (the hand-written jvp) and vmap over the backward (batched grads) included."""
    checked = 0
    for sample in op.samples(device, torch.float64, True):
        if not sample.smooth or sample.args[0].numel() == 0:
            continue
        fn, inputs = _as_function(op, sample, impl)
        if not inputs:
            continue
        assert gradcheck(fn, inputs, check_forward_ad=True, check_batched_grad=True), sample.desc
        assert gradgradcheck(fn, inputs, check_batched_grad=True), sample.desc
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_parity_with_torch(op, device, dtype, impl):
    """Output and every input gradient equal torch.nn.functional's, with non-contiguous upstream gradients
    (dropout: torch's formula on nnbasics' own mask, ``OpInfo.same_draw``)."""
    failures = []
    for sample in op.samples(device, dtype, True):
        for name, mine, ref in run_both(op, sample, impl):
            result = compare(f"{op.name}[{sample.desc}] {name}", mine, ref)
            if not result.close:
                failures.append(str(result))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_contiguous_and_noncontiguous_upstream_grads_agree(op, device):
    for sample in op.samples(device, torch.float64, True)[:3]:
        a = run_both(op, sample, noncontig_grad=True)
        b = run_both(op, sample, noncontig_grad=False)
        for (name, mine_a, _), (_, mine_b, _) in zip(a, b):
            assert compare(name, mine_a, mine_b).close


def test_compare_helper_reports_differences():
    x = torch.tensor([1.0, 2.0, float("nan")], dtype=torch.float64)
    assert compare("same", x, x.clone()).exact
    r = compare("off", x, x + torch.tensor([0.0, 1e-3, 0.0], dtype=torch.float64))
    assert not r.exact and not r.close and r.max_abs_diff == pytest.approx(1e-3)
    assert compare("tiny", x, x + 1e-12).close
    assert not compare("dtype", x, x.float()).close
    assert tolerances(torch.bfloat16)[0] > tolerances(torch.float32)[0]
