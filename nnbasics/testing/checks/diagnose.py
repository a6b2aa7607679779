"""When gradcheck fails, say how the gradient is wrong where the numbers show it: not multiplied by
grad_output, off by a constant factor (N, 2, -1, ...), the transpose of the right one, another input's
gradient; with a few elements of "expected vs yours" instead of whole Jacobians.

The expected gradient is the vector-Jacobian product with one random grad_output, by central finite
differences of sum(output · grad_output) (float64), one element at a time: affordable for sample
inputs of up to ``LIMIT`` elements, which is what a check's inputs are."""
import torch

from ..target import grads, outputs, random_like

LIMIT = 4096


def _scalar(t, a, g):
    """x -> sum over the floating outputs of (output · g), the other inputs fixed."""
    f = t.differentiable_fn(a)

    def s(*xs):
        return sum((o.detach() * w).sum() for o, w in zip(f(*xs), g)).item()
    return s


def _numerical(t, a, g, eps=1e-6):
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


def _analytical(t, g_scale=1.0):
    a = t.make(torch.float64)
    outs = [o for o in outputs(t.run(a)) if o.is_floating_point()]
    g = random_like(outs)
    diff = [(o, w * g_scale) for o, w in zip(outs, g) if o.requires_grad]
    got = grads([o for o, _ in diff], a.tensors, [w for _, w in diff])
    return a, g, [torch.zeros_like(x) if y is None else y.detach() for x, y in zip(a.tensors, got)]


def _close(a, b):
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-3, atol=1e-5))


def _factor(mine, want, sizes):
    """The constant c with mine = c · want, named, if it is one of the usual slips; else None."""
    norm = float((want * want).sum())
    if norm == 0:
        return None
    c = float((mine * want).sum()) / norm
    if not _close(mine, c * want) or abs(c - 1) < 1e-3:
        return None
    named = {-1.0: "-1 (a sign)", 2.0: "2", 0.5: "1/2"}
    for n in sorted(sizes):
        if n > 2:
            named.setdefault(float(n), f"{n} (a size of the inputs: a missing 1/{n}, as in a mean)")
            named.setdefault(1.0 / n, f"1/{n} (a size of the inputs: a 1/{n} too many)")
    for value, name in named.items():
        if abs(c - value) <= 1e-3 * abs(value):
            return name
    return None


def _excerpt(mine, want, k=3) -> str:
    gap = (mine - want).abs().flatten()
    idx = gap.topk(min(k, gap.numel())).indices.sort().values
    fmt = lambda v: "[" + ", ".join(f"{x:.4g}" for x in v.flatten()[idx].tolist()) + "]"
    return f"expected {fmt(want)}, yours {fmt(mine)} (elements {idx.tolist()} of {tuple(want.shape)})"


def diagnose(t) -> str:
    """One clause on how backward's gradients differ from the true ones, or "" when the numbers show nothing."""
    a, g, mine = _analytical(t)
    if sum(x.numel() for x in mine) > LIMIT:
        return ""
    want = _numerical(t, a, g)
    _, _, doubled = _analytical(t, 2.0)
    sizes = {n for x in a.args if isinstance(x, torch.Tensor) for n in x.shape}
    for i, m, w, m2 in zip(a.diff, mine, want, doubled):
        if _close(m, w):
            continue
        what = f"input {i}'s gradient"
        if not w.abs().max() > 0:
            return (f"the true gradient of input {i} is zero at these inputs (a step, a rounding) and yours is not: a "
                    "straight-through, surrogate or reversed gradient is declared with true_gradient=False "
                    f"(--not-true-gradient); {_excerpt(m, w)}")
        if m.abs().max() > 0 and _close(m2, m):
            return (f"{what} does not change when grad_output doubles: backward returns the derivative alone; "
                    f"multiply it by grad_output (the chain rule); {_excerpt(m, w)}")
        for j, other in zip(a.diff, want):
            if j != i and _close(m, other):
                return f"{what} is input {j}'s gradient: backward returns the gradients in the wrong order (swapped)"
        factor = _factor(m, w, sizes)
        if factor:
            return f"{what} is the right one times {factor}; {_excerpt(m, w)}"
        if m.dim() == 2 and m.shape[0] == m.shape[1] and _close(m, w.mT):
            return f"{what} is the transpose of the right one (swap the operands of the matmul, or .mT); {_excerpt(m, w)}"
        return f"{what} is wrong; {_excerpt(m, w)}"
    return ""
