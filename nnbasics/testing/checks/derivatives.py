"""Are the derivatives right? First and second derivatives and the jvp against finite differences
(``torch.autograd.gradcheck``, float64), and values and gradients against a reference."""
import torch
from torch.autograd.gradcheck import GradcheckError

from ..compare import compare
from ..messages import say
from ..target import Fail, Skip, custom_nodes, describe, differentiable, grads, outputs, random_like
from .diagnose import diagnose

_FLOAT64 = torch.float64


def _short(text, limit=3000) -> str:
    """gradcheck's text, its Jacobians cut to ``limit`` characters (the message has the excerpt that matters)."""
    return text if len(text) <= limit else f"{text[:limit]}\n... ({len(text) - limit} more characters)"


_BY_DESIGN = "by design (true_gradient=False): the gradient is deliberately not the derivative, so it is not compared with finite differences"


def gradcheck(t):
    a = t.make(_FLOAT64)
    if not t.true_gradient:
        outs = differentiable(outputs(t.run(a)))
        bad = [i for i, g in zip(a.diff, grads(outs, a.tensors, random_like(outs))) if g is not None and not g.isfinite().all()]
        if bad:
            raise Fail(f"backward returned a gradient with inf or NaN for input(s) {bad} at the sample inputs")
        raise Skip(f"{_BY_DESIGN}; still checked: backward runs and returns finite gradients (and every other check)")
    try:
        torch.autograd.gradcheck(t.differentiable_fn(a), a.tensors, raise_exception=True)
    except GradcheckError as exc:
        try:
            how = diagnose(t)
        except Exception:  # noqa: BLE001 - no diagnosis then; the finding stands
            how = None
        where = describe(exc).split(": ", 1)[1].rstrip(",")
        if how:  # the diagnosis first, gradcheck's own words after
            raise Fail(say("gradcheck_diagnosed", what=how[0], fix=how[1], where=where), _short(str(exc))) from None
        raise Fail(say("gradcheck_undiagnosed", where=where, fix=say("fix_undiagnosed")), _short(str(exc))) from None
    return "first derivatives agree with finite differences (float64)"


# The wrapper torch.autograd.function.once_differentiable puts around every backward it decorates.
_ONCE_DIFFERENTIABLE = torch.autograd.function.once_differentiable(lambda ctx: None).__code__


def gradgradcheck(t):
    if not t.true_gradient:
        raise Skip(f"{_BY_DESIGN}: nor are second derivatives")
    a = t.make(_FLOAT64)
    once = sorted({n._forward_cls.__qualname__ for n in custom_nodes(differentiable(outputs(t.run(a))))
                   if getattr(n._forward_cls.backward, "__code__", None) is _ONCE_DIFFERENTIABLE})
    if once:
        raise Skip(f"{', '.join(once)}.backward is declared @once_differentiable: second derivatives (double "
                   "backward, torch.func.hessian, gradient penalties) are unavailable")
    try:
        torch.autograd.gradgradcheck(t.differentiable_fn(a), a.tensors, raise_exception=True)
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
    return "second derivatives agree with finite differences (float64)"


def functions_without_jvp(t):
    """The names of the Functions in the graph that define no jvp."""
    a = t.make(_FLOAT64)
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
    a = t.make(_FLOAT64)
    try:
        torch.autograd.gradcheck(t.differentiable_fn(a), a.tensors, check_forward_ad=True, check_backward_ad=False,
                                 check_undefined_grad=False, check_batched_grad=False, raise_exception=True)
    except GradcheckError as exc:
        raise Fail(f"jvp disagrees with finite differences ({describe(exc).split(': ', 1)[1].rstrip(',')}): jvp must "
                   "return the derivative times the tangent (None tangent: that input is constant)", str(exc)) from None
    return "jvp agrees with finite differences (float64)"


_SCALES = (("", 1.0), (" at large inputs (x1e3)", 1e3), (" at small inputs (x1e-3)", 1e-3))


def _differences(t, dtype, scale):
    """The first disagreement with the reference at this dtype and scale, or None; Skip if the reference raises."""
    mine, ref = t.make(dtype, scale=scale), t.make(dtype, scale=scale)
    try:
        ref_outs = [o for o in outputs(t.run(ref, fn=t.reference)) if o.is_floating_point()]
    except Exception as exc:  # noqa: BLE001 - inputs outside the reference's domain: nothing to compare there
        raise Skip(f"the reference raised ({describe(exc)})") from None
    my_outs = [o for o in outputs(t.run(mine)) if o.is_floating_point()][: len(ref_outs)]
    if len(my_outs) < len(ref_outs):
        return f"{len(my_outs)} floating output(s), the reference {len(ref_outs)}"
    for i, (m, r) in enumerate(zip(my_outs, ref_outs)):
        c = compare(f"output {i}", m, r)
        if not c.close:
            return f"{c.name} (max |diff| {c.max_abs_diff:.1e})"
    pairs = [(m, r) for m, r in zip(my_outs, ref_outs) if m.requires_grad and r.requires_grad and t.true_gradient]
    if not pairs:
        return None
    g = random_like([r for _, r in pairs])
    got = grads([m for m, _ in pairs], mine.tensors, [x.clone() for x in g])  # clones: backward might write into them
    want = grads([r for _, r in pairs], ref.tensors, g)
    for i, m, r in zip(mine.diff, got, want):
        c = compare(f"gradient of input {i}", m, r)
        if not c.close:
            return f"{c.name} (max |diff| {c.max_abs_diff:.1e})"
    return None


def reference(t):
    if t.reference is None:
        raise Skip("no reference given: pass reference=, the same computation with built-in torch ops, to compare "
                   "values and gradients, also at large and small inputs")
    problems, skipped, compared = [], [], 0
    for dtype, dname in ((torch.float64, "float64"), (torch.float32, "float32")):
        for label, scale in _SCALES:
            try:
                diff = _differences(t, dtype, scale)
            except Skip as exc:
                skipped.append(f"{dname}{label}: {exc}")
                continue
            compared += 1
            if diff:
                problems.append((dname, label, diff))
    if problems:
        where = "; ".join(f"{d}{label}: {diff}" for d, label, diff in problems[:3])
        if all(label for _, label, _ in problems):
            fix = ("overflow, underflow or cancellation at extreme inputs: use a stable form (subtract the max "
                   "before exp, log1p/expm1, clamp before log, compute 1 - y from a single exp)")
        elif all(d == "float32" for d, _, _ in problems):
            fix = "float32 loses precision: rearrange the formula or accumulate in a wider dtype"
        else:
            fix = "the formula differs from the reference's: compare forward, then backward, with the reference's math"
        raise Fail(f"differs from the reference: {where}: {fix}", "\n".join(skipped))
    if not compared:
        raise Skip("the reference raised on every input: " + "; ".join(skipped))
    note = f" ({len(skipped)} variant(s) skipped: the reference raised there)" if skipped else ""
    if not t.true_gradient:
        return f"outputs equal the reference (float64 tight, float32 loose, normal/large/small inputs); gradients not compared: by design (true_gradient=False){note}"
    return f"outputs and gradients equal the reference (float64 tight, float32 loose, normal/large/small inputs){note}"
