"""Does the Function compose? ``torch.func`` (vmap, grad, vmap of grad, jvp) and ``torch.compile``
(one graph, the same values and gradients as eager)."""
import contextlib
import types

import torch
import torch.func

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
from .derivatives import functions_without_jvp

_FUNC_HINTS = (
    ("data-dependent", "no Python branching on tensor values inside the Function (use torch.where)"),
    ("setup_context", ("split forward(ctx, *args) into forward(*args) (no ctx) and setup_context(ctx, inputs, "
                       "output) (the ctx.save_for_backward and ctx attributes), and set generate_vmap_rule = True")),
    ("vmap", "set generate_vmap_rule = True in the Function (or write its vmap staticmethod)"),
    ("saved", ("save only inputs and outputs of forward (return an intermediate as an extra output, "
               "marked non-differentiable, to save it)")),
)


def _func_fix(t, text: str) -> str:
    if type(t.fn).__name__ == "CustomOpDef":  # torch.library.custom_op: its autograd is not torch.func's
        return ("a torch.library.custom_op's register_autograd does not support this torch.func transform in this "
                "torch version; write the op as an autograd.Function (setup_context, generate_vmap_rule) for torch.func")
    for key, fix in _FUNC_HINTS:
        if key in text:
            return fix
    return "keep forward and backward free of .item(), .tolist(), NumPy and in-place changes of inputs"


def _close(what, got, want, problems):
    for i, (x, y) in enumerate(zip(got, want)):
        c = agree(f"{what} {i}", x, y)
        if not c.close:
            problems.append(f"{c.name} differs from plain autograd's (max |diff| {c.max_abs_diff:.1e})")


def _weighted_sum(f, weights):
    """The real scalar torch.func.grad differentiates: Σ (output · weight), its real part for complex outputs."""
    def scalar(*ys):
        return sum((o * w).sum().real for o, w in zip(f(*ys), weights))
    return scalar


def torch_func(t):
    t.comparable()
    a = t.make(t.wide, grad=[])
    a.diff = list(t.diff)  # the same positions, as plain tensors: torch.func differentiates them itself
    f = t.differentiable_fn(a)
    xs = tuple(x.detach() for x in a.tensors)
    batch = tuple(torch.stack([x, x * 0.5 + 0.25]) for x in xs)
    weights = random_like(f(*xs))

    scalar = _weighted_sum(f, weights)

    def autograd_grad(*ys):
        ys = [y.detach().requires_grad_() for y in ys]
        return grads([scalar(*ys)], ys, None)

    randomness = "error" if t.seed is None else "same"
    # vmap's "performance drop" notice for an op without a batching rule is printed by C++ straight to stderr.
    quiet = getattr(torch._C._functorch, "_set_vmap_fallback_warning_enabled", lambda on: None)
    quiet(False)
    problems, step = [], "vmap"
    try:
        _close("vmap output", torch.func.vmap(f, randomness=randomness)(*batch),
               [torch.stack(o) for o in zip(*[f(*[b[k] for b in batch]) for k in range(2)])], problems)
        step = "grad"
        argnums = tuple(range(len(xs)))
        _close("grad of input", torch.func.grad(scalar, argnums=argnums)(*xs), autograd_grad(*xs), problems)
        step = "vmap(grad)"
        per_sample = [autograd_grad(*[b[k] for b in batch]) for k in range(2)]
        _close("per-sample grad of input", torch.func.vmap(torch.func.grad(scalar, argnums=argnums), randomness=randomness)(*batch),
               [torch.stack(g) for g in zip(*per_sample)], problems)
        step = "jvp"
        if not functions_without_jvp(t):
            primal, _ = torch.func.jvp(f, xs, tuple(torch.ones_like(x) for x in xs))
            _close("jvp primal output", primal, f(*xs), problems)
    except Exception as exc:  # noqa: BLE001 - what the transform said is the finding
        raise Warn(f"torch.func.{step} refuses it ({describe(exc).split('. ')[0][:160]}): a limitation, plain autograd works; vmap, "
                   f"torch.func.grad, jacrev and functorch-based libraries cannot use it; {_func_fix(t, str(exc))}",
                   str(exc)) from None
    finally:
        quiet(True)  # torch's default, for the caller's own code
    if problems:
        raise Fail(f"{'; '.join(problems[:3])}: the vmap rule or backward behaves differently under torch.func; "
                   "write backward with batch-agnostic torch ops (no .item(), shape arithmetic on dim 0, or in-place "
                   "writes into saved tensors)")
    jvp_note = "" if not functions_without_jvp(t) else " (jvp not tried: no jvp, see forward_ad)"
    return f"vmap, grad and vmap(grad) agree with plain autograd; jvp runs{jvp_note}"


def _fresh(call):
    """A new function object with a code object of its own around ``call``: Dynamo keeps compiled code per
    code object, and checking many Functions through one shared wrapper would hit its recompile limit."""
    def compiled_call(*args, **kwargs):
        return call(*args, **kwargs)
    code = compiled_call.__code__.replace()
    return types.FunctionType(code, compiled_call.__globals__, "compiled_call", None, compiled_call.__closure__)


def _reason(exc) -> str:
    """The first line of what torch.compile said that carries a reason (its headline is often empty)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("backend=", "Set TORCH", "from user code", "File "))
              and len(line) > 12]
    return f"{type(exc).__name__}: {(useful or lines or [''])[0][:200]}"


_COST = "a limitation, eager works: torch.compile runs it in pieces (a graph break), slower and unfused"


def _compile_refusal(exc, jvp_classes) -> str:
    text = str(exc)
    if "jvp" in text and jvp_classes:
        names = ", ".join(sorted(jvp_classes))
        first = names.split(", ")[0]
        return (f"torch.compile(fullgraph=True) cannot trace {names}: Dynamo refuses a Function that defines jvp "
                f"({_COST}); while compiling, apply a twin without it: Twin = type('Twin', ({first},), "
                f"{{'jvp': torch.autograd.Function.jvp}}) and `(Twin if torch.compiler.is_compiling() else "
                f"{first}).apply(...)` (nnbasics.functional does this)")
    numpy = "numpy" in text.lower() or "ndarray" in text
    fix = ("replace the NumPy calls with torch ops, or accept the break" if numpy else
           "keep forward and backward traceable: no .item(), .tolist(), NumPy, print or Python branching on tensor "
           "values (use torch.where)")
    return f"torch.compile(fullgraph=True) fails: {_reason(exc)} ({_COST}); {fix}"


def _aot_trace(gm, example_inputs):
    """torch.compile backend "aot_trace": what the compile check must prove of a Function, that Dynamo traces it
    (fullgraph) and AOTAutograd traces its backward, without code generation: the forward and backward graphs run
    as traced, split by the plain partitioner (aot_eager's min-cut partitioner imports Inductor, seconds at start-up)."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import default_partition

    def run_as_traced(graph, inputs):
        return make_boxed_func(graph)

    return aot_autograd(fw_compiler=run_as_traced, bw_compiler=run_as_traced,
                        partition_fn=default_partition)(gm, example_inputs)


BACKENDS = {"aot_trace": _aot_trace}  # the default; any name torch.compile knows is passed on (inductor, aot_eager)


def torch_compile(t):
    t.comparable()
    jvp_classes = {n._forward_cls.__qualname__ for n in custom_nodes(differentiable(outputs(t.run(t.make()))))
                   if n._forward_cls.jvp is not torch.autograd.Function.jvp}
    backend = BACKENDS.get(t.compile_backend, t.compile_backend)
    compiled = torch.compile(_fresh(t.call), fullgraph=True, backend=backend, dynamic=False)
    mine, eager = t.make(), t.make()
    try:
        # NumPy is a graph break here, not traced: Dynamo's NumPy tracing loses writes made through .numpy() views
        # (NumPy's in-place exp on an input gave a compiled gradient 5.7 off eager's), which is not the user's fault.
        # A reseeded random forward: Inductor's own generator would draw other numbers than eager's.
        rng = torch._inductor.config.patch(fallback_random=True) if t.seed is not None and \
            t.compile_backend == "inductor" else contextlib.nullcontext()
        with torch._dynamo.config.patch(trace_numpy=False), rng:
            outs = outputs(t.run(mine, fn=compiled))
        diff = [o for o in outs if inexact(o) and o.requires_grad]
        got = grads(diff, mine.tensors, random_like(diff)) if diff else ()
    except Exception as exc:  # noqa: BLE001 - what Dynamo said is the finding
        raise Warn(_compile_refusal(exc, jvp_classes), str(exc)) from None
    eager_outs = outputs(t.run(eager))
    problems = []
    _close("compiled output", outs, eager_outs, problems)
    eager_diff = [o for o in eager_outs if inexact(o) and o.requires_grad]
    if diff:
        _close("compiled gradient of input", got, grads(eager_diff, eager.tensors, random_like(eager_diff)), problems)
    if problems:
        raise Fail(f"{'; '.join(problems[:3])}".replace("plain autograd's", "eager's") + ": the compiled Function "
                   "computes something else than eager: look for Python-side state (globals, attributes set in "
                   "forward) that tracing freezes")
    return f"torch.compile(fullgraph=True, backend={t.compile_backend!r}): one graph, outputs and gradients equal eager"


def func_compile(t):
    """torch.compile over torch.func.grad (and jvp where the Function defines one) against the same transform eager:
    Dynamo may inline forward and drop the custom backward (pytorch#193279) or jvp (#192985), silently."""
    t.comparable()
    a = t.make(t.wide, grad=[])
    a.diff = list(t.diff)
    f = t.differentiable_fn(a, reseed=False)  # reseeded here, outside the compiled region
    xs = tuple(x.detach() for x in a.tensors)
    t.reseed()
    weights = random_like(f(*xs))

    scalar = _weighted_sum(f, weights)

    argnums = tuple(range(len(xs)))
    try:
        t.reseed()
        want = torch.func.grad(scalar, argnums=argnums)(*xs)
    except Exception as exc:  # noqa: BLE001 - torch_func reports the refusal
        raise Skip(f"torch.func.grad refuses it eagerly ({describe(exc)[:120]}; see torch_func): nothing to compile") from None
    # Dynamo alone (backend "eager"): the inlining that drops the backward is Dynamo's, whatever runs the graph after.
    compiled = torch.compile(_fresh(torch.func.grad(scalar, argnums=argnums)), fullgraph=True, backend="eager",
                             dynamic=False)
    try:
        t.reseed()
        with torch._dynamo.config.patch(trace_numpy=False):
            got = compiled(*xs)
    except Exception as exc:  # noqa: BLE001 - the compile check reports a refusal
        raise Skip(f"torch.compile refuses torch.func.grad of it ({_reason(exc)[:120]}; see compile)") from None
    problems = []
    _close("compiled torch.func.grad of input", got, want, problems)
    if problems:
        what = "; ".join(problems[:3]).replace("plain autograd's", "eager torch.func.grad's")
        text = (f"{what}: under torch.compile, torch.func.grad differentiates forward's own ops and ignores the custom "
                "backward (Dynamo inlines forward, pytorch#193279)")
        if not t.true_gradient:
            raise Warn(f"{text}: the by-design gradient is lost there; call the Function outside the compiled region "
                       "(torch.compiler.disable) or use torch.autograd.grad under compile")
        raise Fail(f"{text}, so compiled code gets another gradient: keep forward differentiable by autograd (no "
                   ".detach(), torch.no_grad(), integer or NumPy steps in its math), or keep torch.func transforms of "
                   "it out of torch.compile")
    return "torch.compile(torch.func.grad(...), fullgraph=True) gives eager torch.func.grad's gradients"


def custom_op(t):
    """torch.library.opcheck, for a torch.library custom op: schema, fake tensor, autograd registration."""
    op = getattr(t.fn, "_opoverload", t.fn)  # a CustomOpDef holds its OpOverload
    if isinstance(op, torch._ops.OpOverloadPacket):
        op = op.default
    if not isinstance(op, torch._ops.OpOverload):
        raise Skip("not a torch.library custom op: nothing to register-check (torch.library.opcheck)")
    if not hasattr(torch.library, "opcheck"):
        raise Skip(f"torch {torch.__version__} has no torch.library.opcheck (torch 2.4 and later)")
    a = t.make()
    try:
        torch.library.opcheck(op, a.args, a.kwargs)
    except Exception as exc:  # noqa: BLE001 - opcheck's finding
        raise Fail(f"torch.library.opcheck fails: {_reason(exc)}: fix the registration it names (register_fake's "
                   "shapes, mutates_args, register_autograd)", str(exc)) from None
    return f"torch.library.opcheck: schema, fake tensor, autograd registration and AOT dispatch of {op} pass"
