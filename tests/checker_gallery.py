"""The gallery of the wild: autograd Functions written for this project in the styles, and with the faults,
found in public code (the repository, and the issue or pull request where the pattern was reported, beside
each; the code is ours). Half are sound, half broken; ``python tests/checker_gallery.py`` prints the
confusion table docs/checker.md publishes, and tests/test_checker_gallery.py asserts it.

Each entry: (name, Function, sample inputs, check_function options, the one check that must fail or None).
"""
import checker_gallery_broken as broken
import checker_gallery_broken2 as broken2
import checker_gallery_sound as sound
import checker_gallery_sound2 as sound2
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


def _complex_scan_inputs():
    return ((0.5 * torch.randn(3, 6, dtype=torch.complex128)).requires_grad_(),
            torch.randn(3, 6, dtype=torch.complex128, requires_grad=True))


def _gelu_tanh(x):
    return torch.nn.functional.gelu(x, approximate="tanh")


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
    ("int64 index input kept on ctx", sound2.GatherWithIndexOnCtx, lambda: (_x(4, 5), torch.randint(0, 5, (4, 3))),
     {"reference": lambda x, i: x.gather(1, i)}, None),
    ("random forward (reparameterised sample)", sound2.GaussianReparam, lambda: (_x(4, 5), _x(4, 5)), {}, None),
    ("in place, mark_dirty and an in-place jvp", sound2.ExpInPlaceWithJvp, lambda: (_x(4, 5),), {"reference": torch.exp}, None),
    ("float32 rounding near 0 in a gradient of magnitude 300", sound2.CenteredEnergy,
     lambda: ((torch.randn(8, 32, dtype=DOUBLE) * 30 + 1000).requires_grad_(),),
     {"reference": lambda x: x.var(-1, correction=0) * x.shape[-1]}, None),
    ("safe norm: regularised only at tiny inputs", sound2.SafeNorm, lambda: (_x(4, 5),),
     {"reference": lambda x: torch.linalg.vector_norm(x, dim=-1)}, None),
    ("complex linear scan", sound2.ComplexLinearScan, _complex_scan_inputs, {"reference": sound2.complex_scan_reference}, None),
    ("forward in float32 only", sound2.Float32OnlyGelu, lambda: (torch.randn(4, 5, requires_grad=True),),
     {"reference": _gelu_tanh}, None),
    ("AMP matmul with custom_fwd and custom_bwd", sound2.AmpMatmul, lambda: (_x(4, 6), _x(6, 3)), {"reference": torch.mm}, None),
    ("logsumexp forced to float32 under autocast", sound2.Float32LogSumExp, lambda: (_x(3, 6),),
     {"reference": _lse_reference}, None),
    ("random dropout mask on ctx", sound2.DropoutMaskOnCtx, lambda: (_x(4, 5), 0.3), {}, None),
    ("NumPy noise in forward", sound2.NumpyNoiseInjection, lambda: (_x(4, 5), 0.1), {}, None),
    ("input kept on ctx (hidden from hooks)", broken.InputOnCtx, lambda: (_x(4, 5),), {"reference": torch.sin}, None),
    ("in-place logits without mark_dirty", broken.InPlaceLogitsCE, _ce_inputs, {}, "mutation"),
    ("forward intermediate kept on ctx", broken2.TanhIntermediateOnCtx, lambda: (_x(4, 5),),
     {"reference": torch.nn.functional.silu}, "ctx_tensors"),
    ("layer norm statistics in autocast's dtype", broken2.LowPrecisionLayerNormStats,
     lambda: ((torch.randn(4, 64, dtype=DOUBLE) + 10).requires_grad_(),),
     {"reference": lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:])}, "autocast"),
    ("x.detach() at the start of forward", broken2.DetachedForwardExp, lambda: (_x(4, 5),), {"reference": torch.exp},
     "compile_func"),
    ("log(sigmoid(x)) in two steps", broken2.NaiveLogSigmoid, lambda: (_x(4, 5),),
     {"reference": torch.nn.functional.logsigmoid}, "reference"),
    ("dropout mask drawn again in backward", broken2.DropoutRedrawsInBackward, lambda: (_x(4, 5), 0.5), {}, "gradcheck"),
    ("complex gradient cut to its real part", broken2.ComplexGradTakesReal, _complex_scan_inputs,
     {"reference": sound2.complex_scan_reference}, "grad_metadata"),
    ("float32-only forward, a factor missing in backward", broken2.Float32OnlyWrongGelu,
     lambda: (torch.randn(4, 5, requires_grad=True),), {"reference": _gelu_tanh}, "gradcheck"),
    ("in place, jvp not in place", broken2.InPlaceJvpOutOfPlace, lambda: (_x(4, 5),), {"reference": lambda x: x * 3},
     "forward_ad"),
    ("output on ctx through a list", broken2.OutputInCtxList, lambda: (_x(4, 5),), {"reference": torch.exp},
     "ctx_tensors"),
    ("one-pass variance cancels in float32", broken2.OnePassVariance,
     lambda: ((torch.randn(4, 64, dtype=DOUBLE) + 100).requires_grad_(),),
     {"reference": lambda x: x.var(-1, correction=0)}, "reference"),
    ("norm regularised in forward too", broken2.EpsilonNorm, lambda: (_x(4, 5),),
     {"reference": lambda x: torch.linalg.vector_norm(x, dim=-1)}, "reference"),
    ("complex gradient without conjugates", broken2.ComplexScanWithoutConj, _complex_scan_inputs,
     {"reference": sound2.complex_scan_reference}, "gradcheck"),
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

OPTIONS = {"timeout": 120}  # the default compile backend, aot_trace: Dynamo and AOTAutograd, no code generation


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
