"""Does the Function work under mixed precision? Forward under ``torch.autocast`` (CPU bfloat16, CUDA float16) and
backward after it, as training runs them, against the reference in the same region; and the
dtypes of forward and backward agreeing: a backward that runs outside autocast while forward ran inside it (no
``custom_fwd``/``custom_bwd``) meets tensors of two dtypes. (A gradient in autocast's dtype for a float32 input is
what PyTorch's own AMP example returns, and what autograd casts for the built-ins too: no finding.)"""
import torch

from ..target import (
    Fail,
    Skip,
    Warn,
    agree,
    describe,
    grads,
    inexact,
    outputs,
    random_like,
)

_FIX = ("decorate forward with @torch.amp.custom_fwd(device_type=...) and backward with @torch.amp.custom_bwd("
        "device_type=...) so that backward runs in forward's autocast state, or cast inside (grad.to(x.dtype))")


def _region(t):
    device = next(t.inputs[i].device for i in t.diff)
    if device.type == "cuda":
        return device.type, torch.float16
    if device.type == "cpu":
        return device.type, torch.bfloat16
    raise Skip(f"autocast is checked on CPU (bfloat16) and CUDA (float16), not on {device.type}")


def _low(tensors, dtype):
    """Compare in float32 with the tolerances of the autocast dtype (what each side rounded to)."""
    return [x.detach().to(torch.float32).to(dtype).to(torch.float32) if isinstance(x, torch.Tensor) else x
            for x in tensors]


def _compare(what, mine, ref, dtype, problems):
    for i, (m, r) in enumerate(zip(mine, ref)):
        if m is None or r is None:
            continue
        c = agree(f"{what} {i}", *_low((m, r), dtype), dtype=dtype)
        if not c.close:
            problems.append(f"{c.name} (max |diff| {c.max_abs_diff:.1e})")


def _forward_inside(t, a, region):
    """Forward under ``region`` (an autocast context), backward outside it, as mixed-precision training runs them
    (loss.backward() after the autocast block)."""
    with region():
        outs = [o for o in outputs(t.run(a)) if inexact(o)]
    diff = [o for o in outs if o.requires_grad]
    return outs, grads(diff, a.tensors, random_like(diff)) if diff else ()


def autocast(t):
    if any(t.inputs[i].is_complex() for i in t.diff):
        raise Skip("complex inputs: autocast does not apply to complex tensors")
    t.comparable()
    device, dtype = _region(t)
    name = f"torch.autocast({device!r}, {str(dtype).removeprefix('torch.')})"

    def region():
        return torch.autocast(device, dtype)

    try:
        _forward_inside(t, t.make(torch.float32), region)
    except Exception as exc:  # noqa: BLE001 - what autocast made the Function raise is the finding
        raise Warn(f"with forward under {name} and backward after it, the Function raises {describe(exc)[:160]}: a "
                   f"limitation, mixed-precision training (torch.autocast) cannot use it; {_FIX}", str(exc)) from None
    problems = []
    if t.reference is not None:
        try:
            mine, ref = t.make(torch.float32), t.make(torch.float32)
            my_outs, my_grads = _forward_inside(t, mine, region)
            with region():
                ref_outs = [o for o in outputs(t.run(ref, fn=t.reference)) if inexact(o)]
        except Exception as exc:  # noqa: BLE001 - a reference without autocast support: nothing to compare
            raise Skip(f"the reference raised under {name} ({describe(exc)})") from None
        _compare("output", my_outs, ref_outs, dtype, problems)
        diff = [o for o in ref_outs if o.requires_grad]
        if t.true_gradient and not problems and diff and len(diff) == len([o for o in my_outs if o.requires_grad]):
            _compare("gradient of input", my_grads, grads(diff, ref.tensors, random_like(diff)), dtype, problems)
    if problems:
        raise Fail(f"under {name}, differs from the reference in the same region: {'; '.join(problems[:3])}: compute "
                   "what autocast lowers (matmuls, convolutions) the way the built-ins do, and the rest in the "
                   "input's dtype; or run forward in float32 with @torch.amp.custom_fwd(cast_inputs=torch.float32)")
    compared = "outputs and gradients equal the reference's in the same region" if t.reference is not None else \
        "runs (no reference to compare)"
    return f"forward under {name}, backward after it: {compared}"
