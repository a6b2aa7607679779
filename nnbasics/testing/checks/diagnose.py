"""When gradcheck fails, say how the gradient is wrong, in a learner's terms: not multiplied by grad_output, off
by a constant factor (N, 2, -1, ...), the transpose of the right one, another input's gradient; and for an
elementwise Function (y = f(x) element by element), the derivative itself compared at named inputs: evaluated at
the output y instead of the input x, or of another form than the true one (a term dropped, a sign inside).

``diagnose`` returns (what is wrong, the fix), the first at most about 160 characters, in English; the words
are ``nnbasics.testing.messages``' templates, which ``--lang pt`` renders in Portuguese.

The expected gradient is the vector-Jacobian product with one random grad_output, by central finite
differences of sum(output · grad_output) (float64), one element at a time: affordable for sample
inputs of up to ``LIMIT`` elements, which is what a check's inputs are. An elementwise Function's derivative is
also compared with grad_output all ones, so that its values are dy/dx itself."""
import ast
import inspect
import textwrap

import torch

from ..messages import say
from ..target import grads, outputs, random_like

LIMIT = 4096
_EPS = 1e-6


def _scalar(t, a, g):
    """x -> sum over the floating outputs of (output · g), the other inputs fixed."""
    f = t.differentiable_fn(a)

    def s(*xs):
        return sum((o.detach() * w).sum() for o, w in zip(f(*xs), g)).item()
    return s


def _numerical(t, a, g, eps=_EPS):
    s = _scalar(t, a, g)
    xs = [x.detach().clone() for x in a.tensors]
    found = []
    with torch.no_grad():
        for x in xs:
            flat, grad = x.view(-1), torch.zeros(x.numel(), dtype=x.dtype)
            for j in range(x.numel()):
                keep = flat[j].item()
                flat[j] = keep + eps
                up = s(*xs)
                flat[j] = keep - eps
                down = s(*xs)
                flat[j] = keep
                grad[j] = (up - down) / (2 * eps)
            found.append(grad.view(x.shape))
    return found


def _analytical(t, g_scale=1.0, ones=False):
    a = t.make(torch.float64)
    outs = [o for o in outputs(t.run(a)) if o.is_floating_point()]
    g = [torch.ones_like(o) for o in outs] if ones else random_like(outs)
    diff = [(o, w * g_scale) for o, w in zip(outs, g) if o.requires_grad]
    got = grads([o for o, _ in diff], a.tensors, [w for _, w in diff])
    return a, g, [torch.zeros_like(x) if y is None else y.detach() for x, y in zip(a.tensors, got)]


def _close(a, b):
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-3, atol=1e-5))


def _factor(mine, want, sizes):
    """The template key and fields of the constant c with mine = c · want, if it is one of the usual slips."""
    norm = float((want * want).sum())
    if norm == 0:
        return None
    c = float((mine * want).sum()) / norm
    if not _close(mine, c * want) or abs(c - 1) < 1e-3:
        return None
    named = {-1.0: ("factor_sign", {}), 2.0: ("factor_plain", {"c": "2"}), 0.5: ("factor_plain", {"c": "1/2"})}
    for n in sorted(sizes):
        if n > 2:
            named.setdefault(float(n), ("factor_size", {"n": n}))
            named.setdefault(1.0 / n, ("factor_inverse_size", {"n": n}))
    for value, found in named.items():
        if abs(c - value) <= 1e-3 * abs(value):
            return found
    return None


def _excerpt(mine, want, k=2) -> str:
    gap = (mine - want).abs().flatten()
    idx = gap.topk(min(k, gap.numel())).indices.sort().values
    fmt = lambda v: "[" + ", ".join(f"{x:.3g}" for x in v.flatten()[idx].tolist()) + "]"
    return say("excerpt", want=fmt(want), mine=fmt(mine), idx=idx.tolist(), shape=tuple(want.shape))


# ------------------------------------------------------------------ an elementwise Function's derivative

# The derivatives the course's activations have, written with the saved output y: which one the true derivative
# is, and which one a wrong backward computed. (name, y -> value, the terms it is made of)
FORMS = [
    ("y(1 - y)", lambda y: y * (1 - y), {"y", "1 - y"}),
    ("1 - y²", lambda y: 1 - y * y, {"1 - y²"}),
    ("1 - y", lambda y: 1 - y, {"1 - y"}),
    ("y", lambda y: y, {"y"}),
    ("y(1 + y)", lambda y: y * (1 + y), {"y", "1 + y"}),
    ("1 + y", lambda y: 1 + y, {"1 + y"}),
    ("1 + y²", lambda y: 1 + y * y, {"1 + y²"}),
    ("y²", lambda y: y * y, {"y²"}),
    ("1", torch.ones_like, {"1"}),
]
_DROPPED = {("1 - y²", "1 - y"), ("1 - y²", "y²"), ("1 - y²", "1")}  # a term or a power lost, not a factor


def _form(d, y):
    return next((name for name, f, _ in FORMS if _close(d, f(y))), None)


def _family(want_form, mine_form) -> str:
    """Which kind of slip turns the true form into yours: a term or factor dropped, or a sign inside."""
    want_terms, mine_terms = next(s for n, _, s in FORMS if n == want_form), next(s for n, _, s in FORMS if n == mine_form)
    if mine_terms < want_terms or (want_form, mine_form) in _DROPPED:
        return "form_dropped"
    if {w.replace("-", "+") for w in want_terms} == mine_terms or {w.replace("+", "-") for w in want_terms} == mine_terms:
        return "form_sign"
    return "form_other"


def _at(f, y, shift):
    with torch.no_grad():
        return f(y + shift)[0].detach()


def _points(x, mine, want, y=None) -> str:
    """'x = -1.2: expected 0.18, yours 0.82; x = 0.7: ...' at two inputs: where yours is furthest off, and among the
    others off too, the one furthest from it (of the other sign if there is one)."""
    x, mine, want = x.flatten(), mine.flatten(), want.flatten()
    gap = (mine - want).abs()
    first = int(gap.argmax())
    off = (gap > 1e-3 * gap.max()).nonzero().flatten()
    spread = (x[off] - x[first]).abs() + 1e9 * (x[off] * x[first] < 0)
    second = int(off[spread.argmax()]) if len(off) > 1 else first
    idx = sorted({first, second}, key=lambda j: float(x[j]))
    key = "point_xy" if y is not None else "point"
    y = y.flatten() if y is not None else None
    return "; ".join(say(key, x=f"{x[j]:.2g}", y=f"{y[j]:.2g}" if y is not None else "", want=f"{want[j]:.2g}",
                         mine=f"{mine[j]:.2g}") for j in idx)


def _elementwise(t, a, g, want):
    """(x, y, f) when the Function is elementwise in its one differentiable input: one floating output of x's shape
    whose vector-Jacobian product is grad_output times a derivative taken element by element; else None."""
    if len(a.tensors) != 1:
        return None
    x = a.tensors[0].detach()
    f = t.differentiable_fn(a)
    with torch.no_grad():
        outs = f(x)
        if len(outs) != 1 or outs[0].shape != x.shape or len(g) != 1:
            return None
        d = (_at(f, x, _EPS) - _at(f, x, -_EPS)) / (2 * _EPS)
    return (x, outs[0].detach(), f) if _close(want[0], g[0] * d) else None


def _derivatives(t, found):
    """(yours, the true one): an elementwise Function's dy/dx at the sample inputs (grad_output all ones)."""
    x, _, f = found
    _, _, (mine,) = _analytical(t, ones=True)
    return mine, (_at(f, x, _EPS) - _at(f, x, -_EPS)) / (2 * _EPS)


def _derivative(t, name, found):
    """The diagnosis of an elementwise Function's derivative, compared with grad_output of ones."""
    x, y, f = found
    mine, want = _derivatives(t, found)
    at_y = [(_at(f, y, _EPS) - _at(f, y, -_EPS)) / (2 * _EPS), (_at(f, y, _EPS) - y) / _EPS, (y - _at(f, y, -_EPS)) / _EPS]
    if any(_close(mine, d) for d in at_y):
        return say("at_output", name=name, points=_points(x, mine, want, y)), say("fix_at_output")
    want_form, mine_form = _form(want, y), _form(mine, y)
    if want_form and mine_form:
        return (say(_family(want_form, mine_form), name=name, want=want_form, mine=mine_form,
                    points=_points(x, mine, want)), say("fix_form", want=want_form))
    return say("derivative_wrong", name=name, points=_points(x, mine, want)), say("fix_derivative")


def _names(t) -> list:
    """The forward's parameter names (x, weight, ...), for a Function class; else input 0, input 1, ..."""
    try:
        params = list(inspect.signature(t.fn.forward).parameters)
        params = params[1:] if params and params[0] == "ctx" else params
        return params
    except (AttributeError, TypeError, ValueError):
        return []


def diagnose(t):
    """(what, fix): how backward's gradients differ from the true ones, or None when the numbers show nothing."""
    a, g, mine = _analytical(t)
    if sum(x.numel() for x in mine) > LIMIT:
        return None
    want = _numerical(t, a, g)
    _, _, doubled = _analytical(t, 2.0)
    sizes = {n for x in a.args if isinstance(x, torch.Tensor) for n in x.shape}
    params = _names(t)
    for i, m, w, m2 in zip(a.diff, mine, want, doubled):
        if _close(m, w):
            continue
        found = _elementwise(t, a, g, want)
        name = params[i] if found and i < len(params) else "x"
        what = say("your_derivative", name=name) if found else say("input_grad", i=i)
        if not w.abs().max() > 0:
            return say("true_zero", i=i, excerpt=_excerpt(m, w)), say("fix_true_zero")
        if m.abs().max() > 0 and _close(m2, m):
            gradient = say("grad_of", name=name) if found else what
            return say("no_grad_output", what=gradient, excerpt=_excerpt(m, w)), say("fix_no_grad_output")
        for j, other in zip(a.diff, want):
            if j != i and _close(m, other):
                return say("swapped", what=what, j=j), say("fix_swapped")
        factor = _factor(m, w, sizes)
        if factor:
            key, fields = factor
            excerpt = _points(found[0], *_derivatives(t, found)) if found else _excerpt(m, w)
            return say(key, what=what, excerpt=excerpt, **fields), say(f"fix_{key}", **fields)
        if m.dim() == 2 and m.shape[0] == m.shape[1] and _close(m, w.mT):
            return say("transposed", what=what, excerpt=_excerpt(m, w)), say("fix_transposed")
        if found:
            return _derivative(t, name, found)
        return say("wrong", what=what, excerpt=_excerpt(m, w)), say("fix_wrong")
    return None


# ------------------------------------------------------------------ a backward that reads a name it never had

def _source_names(fn, target):
    """The names assigned from ``ctx.saved_tensors`` in backward (target 'saved_tensors'), or the arguments of
    ``ctx.save_for_backward(...)`` in setup_context/forward (target 'save_for_backward'), as written."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    found = []
    for node in ast.walk(tree):
        if target == "saved_tensors" and isinstance(node, ast.Assign) and "saved_tensors" in ast.unparse(node.value):
            for tgt in node.targets:
                found += [n.id for n in ast.walk(tgt) if isinstance(n, ast.Name)]
        if (target == "save_for_backward" and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "save_for_backward"):
            found += [ast.unparse(arg) for arg in node.args]
    return found


def unsaved_name(cls, exc) -> str:
    """For a NameError in ``cls.backward``: one clause saying what ctx saved, or "" for any other error."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, NameError) or not name or not isinstance(cls, type):
        return ""
    names = _source_names(cls.backward, "saved_tensors")
    saved = names or _source_names(getattr(cls, "setup_context", None), "save_for_backward") or \
        _source_names(cls.forward, "save_for_backward")
    if not saved:
        return say("unsaved_unknown", name=name)
    return say("unsaved_one" if len(saved) == 1 else "unsaved_many", name=name, saved=", ".join(saved))
