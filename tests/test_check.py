"""python -m nnbasics.check: the user-facing comparison with PyTorch."""
import torch

from nnbasics import check, testing


def test_check_passes_for_the_real_ops(capsys):
    assert check.main(["--op", "relu", "--op", "cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 ops agree with PyTorch" in out and "cross_entropy" in out


def test_check_catches_a_wrong_backward(monkeypatch, capsys):
    """A deliberately broken gradient (sigmoid's y(1-y) without the (1-y)) must be reported."""
    import nnbasics.ops.sigmoid as sig

    monkeypatch.setattr(sig, "sigmoid_derivative_times", lambda v, y: v * y)
    assert check.main(["--op", "sigmoid"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "gradcheck: FAIL" in out
    assert testing.compare("x", torch.ones(2), torch.ones(2)).exact
