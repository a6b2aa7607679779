"""The gallery of the wild: autograd Functions written for this project in the styles, and with the faults,
found in public code (the repository, and the issue or pull request where the pattern was reported, beside
each; the code is ours). Half are sound, half broken; ``python tests/checker_gallery.py`` prints the
confusion table docs/checker.md publishes, and tests/test_checker_gallery.py asserts it.

Each entry: (name, Function, sample inputs, check_function options, the one check that must fail or None).
"""
import checker_gallery_broken as broken
import checker_gallery_sound as sound
import torch

DOUBLE = torch.float64


def _x(*shape, low=None):
    x = torch.randn(*shape, dtype=DOUBLE)
    if low is not None:
        x = x.abs() + low
    return x.requires_grad_()


def _ce_inputs():
    return _x(4, 5), torch.tensor([0, 2, 4, 1])


def _mse_inputs():
    return _x(4, 3), torch.randn(4, 3, dtype=DOUBLE)


def _lse_reference(x):
    return torch.logsumexp(x, -1)


GALLERY = [
    ("tutorial ReLU (old style)", sound.TutorialReLU, lambda: (_x(4, 5),), {"reference": torch.relu}, None),
    ("docs Exp", sound.DocsExp, lambda: (_x(4, 5),), {"reference": torch.exp}, None),
    ("docs LinearFunction without bias", sound.DocsLinear, lambda: (_x(4, 5), _x(3, 5)), {}, None),
    ("docs LinearFunction with bias", sound.DocsLinear, lambda: (_x(4, 5), _x(3, 5), _x(3)),
     {"reference": torch.nn.functional.linear}, None),
    ("docs MulConstant (non-tensor argument)", sound.DocsMulConstant, lambda: (_x(4, 5), 2.5), {}, None),
    ("MyCube (setup_context, two outputs)", sound.FuncCube, lambda: (_x(3, 4),), {}, None),
    ("NumpyExp_ (NumPy, in place, mark_dirty)", sound.NumpyExpInPlace, lambda: (_x(3, 4),), {"reference": torch.exp}, None),
    ("timm memory-efficient swish", sound.TimmSwish, lambda: (_x(4, 5),), {"reference": torch.nn.functional.silu}, None),
    ("detectron2 empty-tensor op", sound.NewEmptyTensor, lambda: (_x(0, 4), (0, 2, 2)), {}, None),
    ("straight-through rounding", sound.RoundSTE, lambda: (_x(4, 5),), {"true_gradient": False, "reference": torch.round}, None),
    ("gradient reversal", sound.GradientReversal, lambda: (_x(4, 5), 0.7), {"true_gradient": False}, None),
    ("arctan surrogate spike", sound.ATanSpike, lambda: (_x(4, 5),), {"true_gradient": False}, None),
    ("checkpoint-style RNG state on ctx", sound.CheckpointLikeDropout, lambda: (_x(4, 5),), {"seed": 0}, None),
    ("int64 index on ctx", sound.MaxWithIndex, lambda: (_x(4, 5),), {"reference": lambda x: x.max(-1).values}, None),
    ("entmax-style dim keyword", sound.EntmaxStyleSoftmax, lambda: (_x(3, 6),), {"kwargs": {"dim": 0}}, None),
    ("NumpySort (three outputs, two non-differentiable)", sound.NumpySort, lambda: (_x(3, 4), 1),
     {"reference": lambda x, dim: torch.sort(x, dim)[0]}, None),
    ("two outputs, grads not materialized", sound.SinCosUnmaterialized, lambda: (_x(4, 5),),
     {"reference": lambda x: (x.sin(), x.cos())}, None),
    ("in-place logits without mark_dirty", broken.InPlaceLogitsCE, _ce_inputs, {}, "mutation"),
    ("input kept on ctx", broken.InputOnCtx, lambda: (_x(4, 5),), {"reference": torch.sin}, "ctx_tensors"),
    ("output cycle through a closure", broken.ClosureCycle, lambda: (_x(4, 5),), {"reference": torch.tanh}, "leak"),
    ("grad_output.view assumes contiguous", broken.ViewGradOutput, lambda: (_x(2, 4, 5), _x(5, 3)), {}, "grad_layouts"),
    ("squeeze drops a dimension", broken.SqueezedGrad, lambda: (_x(4, 5), _x(4, 1)), {}, "grad_metadata"),
    ("wrong number of gradients", broken.MissingGradient, lambda: (_x(4, 5, low=0.5), 3), {}, "grad_metadata"),
    ("double backward silently wrong", broken.DetachedDoubleBackward, lambda: (_x(4, 5),), {"reference": torch.sigmoid},
     "gradgradcheck"),
    ("grad_output forgotten", broken.ForgetsGradOutput, lambda: (_x(4, 5),), {"reference": torch.tanh}, "gradcheck"),
    ("mean without 1/N", broken.MeanWithoutN, _mse_inputs, {}, "gradcheck"),
    ("weight gradient transposed", broken.TransposedWeightGrad, lambda: (_x(4, 3), _x(3, 3)), {}, "gradcheck"),
    ("gradients swapped", broken.SwappedGrads, lambda: (_x(4, 5), _x(4, 5)), {"reference": torch.mul}, "gradcheck"),
    ("None saved, then read", broken.SavesNoneThenReads, lambda: (_x(4, 5), _x(3, 5)), {}, "needs_input_grad"),
    ("grad_output modified in place", broken.GradOutputInPlace, lambda: (_x(4, 5),), {"reference": torch.sigmoid}, "mutation"),
    ("float32 gradient for float64", broken.Float32Backward, lambda: (_x(4, 5),), {"reference": torch.sin}, "grad_metadata"),
    ("outputs kept in a global", broken.GlobalMemo, lambda: (_x(4, 5),), {"reference": torch.exp}, "leak"),
    ("jvp without the tangent", broken.JvpWithoutTangent, lambda: (_x(4, 5),), {"reference": torch.exp}, "forward_ad"),
    ("logsumexp overflows", broken.NaiveLogSumExp, lambda: (_x(3, 6),), {"reference": _lse_reference}, "reference"),
]

OPTIONS = {"compile_backend": "aot_eager", "timeout": 120}


def run(entry):
    from nnbasics.testing import check_function

    _, fn, inputs, options, _ = entry
    torch.manual_seed(0)
    return check_function(fn, *inputs(), **{**OPTIONS, **options})


def table(rows) -> str:
    """The confusion table: (name, expected check or None, report) rows."""
    sound = [(n, r) for n, e, r in rows if e is None]
    broken = [(n, e, r) for n, e, r in rows if e is not None]
    false_alarms = [n for n, r in sound if r.failed]
    caught = [n for n, e, r in broken if r.failed == [e]]
    other = [n for n, e, r in broken if r.failed and r.failed != [e]]
    missed = [n for n, e, r in broken if not r.failed]
    lines = ["| | reported failing | not failing |", "|---|---|---|",
             f"| sound ({len(sound)}) | {len(false_alarms)} | {len(sound) - len(false_alarms)} |",
             (f"| broken ({len(broken)}) | {len(caught) + len(other)} ({len(caught)} by exactly the check named for "
              f"the fault, as one line) | {len(missed)} |")]
    warned = {}
    for _, r in sound:
        for check in r.warned:
            warned[check] = warned.get(check, 0) + 1
    lines.append("\nWarnings on the sound ones: " + ", ".join(f"{c} {k}" for c, k in sorted(warned.items())))
    for n in false_alarms + other + missed:
        lines.append(f"\n- not as expected: {n}")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    import warnings
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    warnings.simplefilter("ignore")
    results = [(e[0], e[4], run(e)) for e in GALLERY]
    for name, expected, report in results:
        print(f"{name}: expected {expected or 'no fail'}; failed {report.failed or '-'}; warned {report.warned or '-'}")
    print()
    print(table(results))
