"""Are the derivatives right? First and second derivatives and the jvp against finite differences
(``torch.autograd.gradcheck``, float64), and values and gradients against a reference."""
import torch
from torch.autograd.gradcheck import GradcheckError

from ..messages import say
from ..target import (
    Fail,
    Skip,
    Warn,
    agree,
    custom_nodes,
    describe,
    differentiable,
    grads,
    inexact,
    outputs,
    random_like,
)
from .diagnose import diagnose


def _dtype_name(t) -> str:
    complex_ = any(t.inputs[i].is_complex() for i in t.diff)
    return str(t.wide.to_complex() if complex_ else t.wide).removeprefix("torch.")


def _short(text, limit=3000) -> str:
    """gradcheck's text, its Jacobians cut to ``limit`` characters (the message has the excerpt that matters)."""
    return text if len(text) <= limit else f"{text[:limit]}\n... ({len(text) - limit} more characters)"


_BY_DESIGN = "by design (true_gradient=False): the gradient is deliberately not the derivative, so it is not compared with finite differences"


def gradcheck(t):
    a = t.make(t.wide)
    if not t.true_gradient:
        outs = differentiable(outputs(t.run(a)))
        bad = [i for i, g in zip(a.diff, grads(outs, a.tensors, random_like(outs))) if g is not None and not g.isfinite().all()]
        if bad:
            raise Fail(f"backward returned a gradient with inf or NaN for input(s) {bad} at the sample inputs")
        raise Skip(f"{_BY_DESIGN}; still checked: backward runs and returns finite gradients (and every other check)")
    t.comparable()
    try:
        torch.autograd.gradcheck(t.differentiable_fn(a), a.tensors, raise_exception=True, **t.fd_options())
    except GradcheckError as exc:
        try:
            how = diagnose(t)
        except Exception:  # noqa: BLE001 - no diagnosis then; the finding stands
            how = None
        where = describe(exc).split(": ", 1)[1].rstrip(",")
        if how:  # the diagnosis first, gradcheck's own words after
            raise Fail(say("gradcheck_diagnosed", what=how[0], fix=how[1], where=where), _short(str(exc))) from None
        raise Fail(say("gradcheck_undiagnosed", where=where, fix=say("fix_undiagnosed")), _short(str(exc))) from None
    if t.narrow:
        raise Warn(f"first derivatives agree with finite differences, but {t.narrow}: a limitation (float64 callers, "
                   "and gradcheck in float64, cannot use it); let forward follow its input's dtype (no hard-coded "
                   "float32, no .float())")
    seeded = "torch.manual_seed(0), NumPy's and Python's generators too" if t.other_generators else "torch.manual_seed(0)"
    drawn = (f"; forward draws random numbers, so every call of every check is reseeded ({seeded}) and compares one "
             "draw with itself" if t.auto_seed else "")
    return f"first derivatives agree with finite differences ({_dtype_name(t)}){drawn}"


# The wrapper torch.autograd.function.once_differentiable puts around every backward it decorates.
_ONCE_DIFFERENTIABLE = torch.autograd.function.once_differentiable(lambda ctx: None).__code__


def gradgradcheck(t):
    if not t.true_gradient:
        raise Skip(f"{_BY_DESIGN}: nor are second derivatives")
    t.comparable()
    a = t.make(t.wide)
    once = sorted({n._forward_cls.__qualname__ for n in custom_nodes(differentiable(outputs(t.run(a))))
                   if getattr(n._forward_cls.backward, "__code__", None) is _ONCE_DIFFERENTIABLE})
    if once:
        raise Skip(f"{', '.join(once)}.backward is declared @once_differentiable: second derivatives (double "
                   "backward, torch.func.hessian, gradient penalties) are unavailable")
    try:
        torch.autograd.gradgradcheck(t.differentiable_fn(a), a.tensors, raise_exception=True, **t.fd_options())
    except Exception as exc:
        text = str(exc)
        if "once_differentiable" in text:
            raise Skip("backward is declared @once_differentiable: second derivatives (double backward, "
                       "torch.func.hessian, gradient penalties) are unavailable") from None
        if "in-place operation" in text:
            raise Fail(f"backward cannot be differentiated: {describe(exc)}: it modifies grad_output or a saved "
                       "tensor in place; compute new tensors instead", text) from None
        if isinstance(exc, GradcheckError):
            raise Fail(f"second derivatives disagree with finite differences of backward ({describe(exc).split(': ', 1)[1]}): "
                       "backward must be built from differentiable torch ops on its inputs and saved tensors "
                       "(no .detach(), .data, torch.no_grad, NumPy or in-place changes of grad_output), and first derivatives right "
                       "(see gradcheck); or mark it @once_differentiable", text) from None
        if "does not require grad" in text:
            raise Fail(f"backward's result cannot be differentiated ({describe(exc)}): it is computed outside "
                       "autograd (.detach(), .data, torch.no_grad); use differentiable ops, or mark backward "
                       "@once_differentiable to say so", text) from None
        raise
    return f"second derivatives agree with finite differences ({_dtype_name(t)})"


def functions_without_jvp(t):
    """The names of the Functions in the graph that define no jvp."""
    a = t.make(t.wide)
    nodes = custom_nodes(differentiable(outputs(t.run(a))))
    return sorted({n._forward_cls.__qualname__ for n in nodes if n._forward_cls.jvp is torch.autograd.Function.jvp})


def forward_ad(t):
    missing = functions_without_jvp(t)
    if missing and type(t.fn).__name__ == "CustomOpDef":
        raise Skip("a torch.library custom op: register_autograd gives it no forward-mode AD (torch.func.jvp, jacfwd, "
                   "hessian, torch.autograd.forward_ad)")
    if missing:
        raise Skip(f"{', '.join(missing)} define{'s' if len(missing) == 1 else ''} no jvp: forward-mode AD (torch.func.jvp, jacfwd, hessian, "
                   "torch.autograd.forward_ad) is unavailable; to enable it, define jvp(ctx, *tangents) with "
                   "ctx.save_for_forward")
    if not t.true_gradient:
        raise Skip(f"{_BY_DESIGN}: nor is the jvp")
    t.comparable()
    a = t.make(t.wide)
    try:
        torch.autograd.gradcheck(t.differentiable_fn(a), a.tensors, check_forward_ad=True, check_backward_ad=False,
                                 check_undefined_grad=False, check_batched_grad=False, raise_exception=True,
                                 **t.fd_options())
    except GradcheckError as exc:
        raise Fail(f"jvp disagrees with finite differences ({describe(exc).split(': ', 1)[1].rstrip(',')}): jvp must "
                   "return the derivative times the tangent (None tangent: that input is constant)", str(exc)) from None
    return f"jvp agrees with finite differences ({_dtype_name(t)})"


_SCALES = (("", 1.0), (" at large inputs (x1e3)", 1e3), (" at small inputs (x1e-3)", 1e-3))


def _difference(name, mine, ref):
    """(kind, text) for a disagreement of ``mine`` with the reference's ``ref``, or None: kind "nonfinite" for inf or
    NaN where the reference is finite, else "differs"."""
    if mine.shape == ref.shape and mine.dtype == ref.dtype:  # where only the reference overflowed, it is not the judge
        mine = torch.where(ref.isfinite() | ~mine.isfinite(), mine.detach(), ref.detach())
    c = agree(name, mine, ref)
    if c.close:
        return None
    if mine.shape == ref.shape and mine.dtype == ref.dtype and bool((~mine.isfinite() & ref.isfinite()).any()):
        return "nonfinite", f"{name} (inf or NaN where the reference is finite)"
    size = ref.detach().abs()
    size = size[size.isfinite()].max().item() if size.numel() and bool(size.isfinite().any()) else 0.0
    relative = f", {c.max_abs_diff / size:.0e} of its largest value" if size else ""
    return "differs", f"{name} (max |diff| {c.max_abs_diff:.1e}{relative})"


def _differences(t, dtype, scale):
    """The disagreements with the reference at this dtype and scale: a list of (what, kind, text), ``what`` "output"
    or "gradient"; Skip if the reference raises."""
    mine, ref = t.make(dtype, scale=scale), t.make(dtype, scale=scale)
    try:
        ref_outs = [o for o in outputs(t.run(ref, fn=t.reference)) if inexact(o)]
    except Exception as exc:  # noqa: BLE001 - inputs outside the reference's domain: nothing to compare there
        raise Skip(f"the reference raised ({describe(exc)})") from None
    my_outs = [o for o in outputs(t.run(mine)) if inexact(o)][: len(ref_outs)]
    if len(my_outs) < len(ref_outs):
        return [("output", "differs", f"{len(my_outs)} floating output(s), the reference {len(ref_outs)}")]
    found = [("output", *d) for i, (m, r) in enumerate(zip(my_outs, ref_outs)) if (d := _difference(f"output {i}", m, r))]
    pairs = [(m, r) for m, r in zip(my_outs, ref_outs) if m.requires_grad and r.requires_grad and t.true_gradient]
    if found or not pairs:
        return found[:1]
    g = random_like([r for _, r in pairs])
    got = grads([m for m, _ in pairs], mine.tensors, [x.clone() for x in g])  # clones: backward might write into them
    want = grads([r for _, r in pairs], ref.tensors, g)
    return [("gradient", *d) for i, m, r in zip(mine.diff, got, want)
            if (d := _difference(f"gradient of input {i}", m, r))][:1]


def reference(t):
    if t.reference is None:
        raise Skip("no reference given: pass reference=, the same computation with built-in torch ops, to compare "
                   "values and gradients, also at large and small inputs")
    t.comparable()
    problems, skipped, compared = [], [], 0
    for dtype, dname in t.reference_dtypes():
        for label, scale in _SCALES:
            try:
                found = _differences(t, dtype, scale)
            except Skip as exc:
                skipped.append(f"{dname}{label}: {exc}")
                continue
            compared += 1
            problems += [(dname, label, what, kind, text) for what, kind, text in found]
    # A wrong value anywhere, inf or NaN where the reference is finite, or a gradient wrong at the sample inputs is a
    # defect; a gradient that departs only at the checker's scaled inputs may be a deliberate approximation there.
    failing = [p for p in problems if p[2] == "output" or p[3] == "nonfinite" or not p[1]]
    if failing:
        where = "; ".join(f"{d}{label}: {text}" for d, label, _, _, text in failing[:3])
        if all(label for _, label, *_ in failing):
            fix = ("overflow, underflow or cancellation at extreme inputs: use a stable form (subtract the max "
                   "before exp, log1p/expm1, clamp before log, compute 1 - y from a single exp)")
        elif all(d == "float32" for d, *_ in failing):
            fix = "float32 loses precision: rearrange the formula or accumulate in a wider dtype"
        else:
            fix = "the formula differs from the reference's: compare forward, then backward, with the reference's math"
        raise Fail(f"differs from the reference: {where}: {fix}", "\n".join(skipped))
    if problems:
        where = "; ".join(f"{d}{label}: {text}" for d, label, _, _, text in problems[:3])
        raise Warn(f"the gradient departs from the reference only at the checker's scaled inputs ({where}), while "
                   "values and gradients agree at the sample inputs: right where you use it; if these scales matter, "
                   "it is an approximation or a loss of precision there (a regularised or clamped formula)",
                   "\n".join(skipped))
    if not compared:
        raise Skip("the reference raised on every input: " + "; ".join(skipped))
    note = f" ({len(skipped)} variant(s) skipped: the reference raised there)" if skipped else ""
    kinds = t.reference_kinds()
    if not t.true_gradient:
        return f"outputs equal the reference ({kinds}); gradients not compared: by design (true_gradient=False){note}"
    return f"outputs and gradients equal the reference ({kinds}){note}"
