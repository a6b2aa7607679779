"""Comparing a hand-written result with PyTorch's: ``compare`` (exact? within tolerance? largest
difference), and the per-dtype ``tolerances``."""
from dataclasses import dataclass

import torch


@dataclass
class Comparison:
    name: str
    exact: bool
    close: bool
    max_abs_diff: float

    def __str__(self):
        return f"{self.name:<48} exact: {self.exact!s:<5}  close: {self.close!s:<5}  max|diff|: {self.max_abs_diff:.2e}"


def tolerances(dtype):
    """(rtol, atol) for comparing a hand-written result with PyTorch's in ``dtype``."""
    return {
        torch.float64: (1e-7, 1e-9),
        torch.float32: (1e-4, 1e-5),
        torch.bfloat16: (2e-2, 2e-2),
        torch.float16: (2e-3, 2e-3),
    }[dtype]


def compare(name, mine, ref, rtol=None, atol=None) -> Comparison:
    """Compare a hand-written result with PyTorch's: exact? within tolerance? max |difference|.

    NaN matches NaN. ``None`` matches ``None`` (no gradient on either side).
    """
    if mine is None or ref is None:
        same = mine is None and ref is None
        return Comparison(name, same, same, 0.0 if same else float("inf"))
    if mine.shape != ref.shape or mine.dtype != ref.dtype:
        return Comparison(f"{name} [{tuple(mine.shape)} {mine.dtype} vs {tuple(ref.shape)} {ref.dtype}]", False, False, float("inf"))
    default_rtol, default_atol = tolerances(ref.dtype) if ref.is_floating_point() else (0, 0)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    a, b = mine.detach().double(), ref.detach().double()
    both_nan = a.isnan() & b.isnan()
    diff = torch.where(both_nan, 0.0, (a - b).abs())
    diff = torch.where(a == b, 0.0, diff)  # inf == inf
    max_diff = diff.max().item() if diff.numel() else 0.0
    exact = bool(((a == b) | both_nan).all())
    close = exact or bool(torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True).all())
    return Comparison(name, exact, close, max_diff)
