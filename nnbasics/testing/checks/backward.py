"""Does backward honour autograd's contract? The same result whatever the layout of ``grad_output``;
one gradient per input, of exactly the input's shape, dtype and device; ``None`` (and nothing saved)
for the inputs that need no gradient."""
import torch

from ..target import (
    Fail,
    agree,
    describe,
    differentiable,
    expected_grads,
    function_name,
    grads,
    inexact,
    outputs,
    probe,
    random_like,
    same_values,
    verdict,
)


def _layouts(g: torch.Tensor) -> dict:
    """Upstream gradients holding the same kind of values as ``g`` in other memory layouts."""
    gen = torch.Generator().manual_seed(1)
    found = {}  # how the layout differs from a contiguous one -> the upstream gradient

    def rand(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(g.device, g.dtype)

    if g.dim() >= 2:
        found["transposed"] = rand(g.shape).mT.contiguous().mT
    big = [d for d, n in enumerate(g.shape) if n > 1]
    if big:
        d = big[0]
        found["expanded (stride 0)"] = rand(g.shape[:d] + (1,) + g.shape[d + 1:]).expand(g.shape)
    found["sliced (storage offset)"] = rand((g.numel() + 3,))[2: 2 + g.numel()].view(g.shape)
    if g.dim() >= 1:
        wider = rand(g.shape[:-1] + (g.shape[-1] + 2,))
        found["sliced (gaps between rows)"] = wider[..., 1:-1]
    return found


def grad_layouts(t):
    t.comparable()
    probe_outs = differentiable(outputs(t.run(t.make())))
    problems = []
    for kind in sorted({k for o in probe_outs for k in _layouts(o)}):
        # Each forward straight before its own backward: a random Function, reseeded before forward, then draws the
        # same numbers in backward too.
        a, b = t.make(), t.make()
        outs_a = differentiable(outputs(t.run(a)))
        odd = [_layouts(o).get(kind, g) for o, g in zip(outs_a, random_like(outs_a))]
        plain = [g.contiguous().clone() for g in odd]  # before backward runs: it might write into odd
        try:
            got = grads(outs_a, a.tensors, odd)
        except Exception as exc:  # noqa: BLE001 - failing only for this layout is the finding
            problems.append(f"for a grad_output {kind}, backward raised {describe(exc)}")
            continue
        outs_b = differentiable(outputs(t.run(b)))
        want = grads(outs_b, b.tensors, plain)
        for i, x, y in zip(a.diff, got, want):
            c = agree(f"gradient of input {i}", x, y)
            if not c.close:
                problems.append(f"{c.name} for a grad_output {kind} (max |diff| {c.max_abs_diff:.1e})")
    if problems:
        raise Fail(f"backward depends on grad_output's memory layout (compared with a contiguous grad_output of the "
                   f"same values): {'; '.join(sorted(problems)[:3])}: use grad_output through torch ops only (no "
                   "as_strided, .view on assumed strides, data_ptr or storage arithmetic, no writing into it); "
                   "call .contiguous() first if a kernel needs it")
    return "the same gradients for a transposed, expanded (stride 0) or sliced grad_output as for a contiguous one"


def _meta(x) -> str:
    return f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')} on {x.device}"


def _backward_on_copies(node, grad_outputs) -> tuple:
    """The node's backward, called directly on copies of ``grad_outputs``; always a tuple."""
    got = node.apply(*[g.clone() if isinstance(g, torch.Tensor) else g for g in grad_outputs])
    return got if isinstance(got, tuple) else (got,)


def _expandable(shape, to) -> bool:
    """Whether autograd's engine reduces a gradient of shape ``to`` to an input of ``shape`` (sum over broadcast dims)."""
    try:
        torch.empty(shape, device="meta").expand(to)
        return True
    except RuntimeError:
        return False


def grad_metadata(t):
    problems = []

    def visit(node, grad_outputs):
        name, want = function_name(node), expected_grads(node)
        got = _backward_on_copies(node, grad_outputs)
        extra = got[len(want):]
        if len(got) < len(want) or any(g is not None for g in extra):
            problems.append(("fail", (f"{name}.backward returned {len(got)} value(s) for {len(want)} forward input(s): "
                              "return one gradient per input of forward, None for those without one (non-tensors too)")))
            return
        for i, (g, m) in enumerate(zip(got, want)):
            if g is not None and not isinstance(g, torch.Tensor):
                problems.append(("fail", (f"{name}.backward returned a {type(g).__name__} for input {i}: return a "
                                  "tensor or None")))
            elif g is not None and m is not None:
                shape, to = tuple(m.shape), tuple(g.shape)
                if to != shape and _expandable(shape, to):
                    problems.append(("warn", (f"{name}.backward returned a gradient of shape {to} for input {i} of shape "
                                      f"{shape}: autograd sums it over the broadcast dims, which is right but costs a "
                                      "tensor of the larger shape and a reduction in the engine; return "
                                      ".sum_to_size(input.shape) yourself")))
                elif to != shape:
                    problems.append(("fail", (f"{name}.backward returned a gradient of shape {to} for input {i} of shape "
                                      f"{shape}, which autograd refuses: return exactly the input's shape (the "
                                      "gradient of a (m, n) input is (m, n); reduce broadcast dims with .sum_to_size)")))
                elif g.dtype != m.dtype or g.device != m.device:
                    problems.append(("fail", (f"{name}.backward returned {_meta(g)} for input {i}, which is {_meta(m)}; "
                                      "autograd silently casts it, and what the cast rounds off cannot come back: compute the "
                                      "gradient in the input's dtype and device")))

    engine_error = probe(t, t.make(), visit)
    verdict(problems)
    if engine_error is not None:
        raise Fail(f"backward failed: {describe(engine_error)}", str(engine_error))
    return "each gradient has exactly its input's shape, dtype and device, before autograd's engine sees it"


def _unread_saved(t, k):
    """The floating tensors saved (``save_for_backward``) with only input ``k`` requiring grad whose values the
    gradient of ``k`` does not depend on: each is replaced by NaN in turn, and backward is run again."""
    def run(poison=None):
        a = t.make(grad=[k])
        floating = []

        def pack(x):
            same = [i for i, arg in enumerate(a.args) if isinstance(arg, torch.Tensor) and arg.shape == x.shape
                    and arg.data_ptr() == x.data_ptr()]
            floating.append((inexact(x), f"input {same[0]}" if same else f"a tensor of shape {tuple(x.shape)}"))
            return len(floating) - 1, x.detach()  # detached: no reference cycle through a saved output

        def unpack(packed):
            i, x = packed
            return torch.full_like(x, float("nan")) if i == poison else x

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            outs = differentiable(outputs(t.run(a)))
            got = grads(outs, a.tensors, random_like(outs))[0]
        return floating, got

    floating, clean = run()
    unread = []
    for s, (is_float, what) in enumerate(floating):
        if is_float and clean is not None and same_values(run(poison=s)[1], clean):
            unread.append((s, what))
    return unread


def _none_saved(exc, node) -> bool:
    return isinstance(exc, (TypeError, AttributeError)) and "NoneType" in str(exc) and any(
        x is None for x in getattr(node, "saved_tensors", ()))


def needs_input_grad(t):
    problems = []
    for k in t.diff:
        def visit(node, grad_outputs, k=k):
            name = function_name(node)
            try:
                got = _backward_on_copies(node, grad_outputs)
            except Exception as exc:  # noqa: BLE001 - the Function's own error is the finding
                if _none_saved(exc, node):
                    problems.append(("fail", (f"with only input {k} requiring grad, {name}.backward raised "
                                      f"{describe(exc)}: a tensor it reads was saved as None because "
                                      "ctx.needs_input_grad said no gradient needs it, but the gradient of input "
                                      f"{k} does; save each tensor whenever a gradient that reads it is needed")))
                else:
                    problems.append(("fail", (f"with only input {k} requiring grad, {name}.backward raised "
                                      f"{describe(exc)}: backward must work for any subset of inputs requiring grad")))
                return
            for i, (g, need) in enumerate(zip(got, node.needs_input_grad)):
                if not need and isinstance(g, torch.Tensor):
                    problems.append(("warn", (f"{name}.backward computes a gradient for input {i} although "
                                      f"ctx.needs_input_grad[{i}] is False (only input {k} requires grad): time spent "
                                      f"on a result autograd throws away; compute it only `if ctx.needs_input_grad[{i}]`, "
                                      "else return None")))

        probe(t, t.make(grad=[k]), visit)
        if not problems:
            for s, what in _unread_saved(t, k):
                problems.append(("warn", (f"with only input {k} requiring grad, saved tensor #{s} ({what}) is not read "
                                  "by that gradient: memory kept alive until backward for nothing; save each tensor "
                                  "only when the gradient that reads it is needed (ctx.needs_input_grad in "
                                  "setup_context or forward), and if only its shape is needed, save the shape")))
    verdict(problems[:2] if all(level == "warn" for level, _ in problems) else problems)
    if len(t.diff) == 1:
        return "backward returns None for every input that needs no gradient, and reads every tensor it saves"
    return "with any one input requiring grad, backward returns None for the others and saves only what it reads"
