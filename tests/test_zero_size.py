"""Zero-size dimensions in every position, for every registered op (``OpInfo.zero_size``),
custom and fused, forward and backward: torch's ops take them (an empty batch, a layer with
no inputs or no outputs, a class dimension of size 0), so the hand-written ones must too, and
give torch's output (values, NaN where torch's empty mean is NaN, shape, dtype) and gradients."""
import pytest
import torch

from nnbasics.testing import OPS, compare, run_both


def _torch_refuses(op, sample) -> bool:
    try:
        op.builtin(*sample.args, **sample.kwargs)
    except Exception:  # noqa: BLE001 - torch's refusal, of whatever type, means there is nothing to compare
        return True
    return False


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_zero_size_dimensions_match_torch(op, device, impl):
    failures, ran = [], 0
    for sample in op.zero_size(device, torch.float64, True):
        what = f"{op.name}[{sample.desc}]"
        try:
            results = run_both(op, sample, impl)
        except Exception as exc:  # noqa: BLE001 - a failure, unless torch refuses the input too
            if not _torch_refuses(op, sample):
                failures.append(f"{what}: raised {type(exc).__name__}: {exc}")
            continue
        ran += 1
        for name, mine, ref in results:
            if mine is None or ref is None:
                if (mine is None) != (ref is None):
                    failures.append(f"{what} {name}: gradient present on one side only")
                continue
            if (mine.shape, mine.dtype) != (ref.shape, ref.dtype):
                failures.append(f"{what} {name}: {tuple(mine.shape)} {mine.dtype}, torch {tuple(ref.shape)} {ref.dtype}")
            elif not (r := compare(f"{what} {name}", mine, ref)).close:
                failures.append(str(r))
    assert not failures, "\n".join(failures)
    assert ran > 0
