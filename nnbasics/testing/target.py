"""What every check of ``check_function`` works on: the function under test, fresh copies of its
sample inputs, and a look inside the autograd graph it builds.

A check calls ``Target.make`` for its own copies of the inputs (in float64 where it needs
finite differences), ``Target.run`` to call the function on them, and raises ``Fail`` or
``Skip`` with a message that says what is wrong and how to fix it. ``probe`` runs a backward
pass and shows each custom Function's own ``backward`` to the check *before* autograd's
engine validates (sums, casts) what it returns.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import torch

from .compare import Comparison, compare, tolerances


class Fail(Exception):
    """A check found a fault. ``message``: what is wrong and how to fix it, one line; ``detail``: the rest."""

    def __init__(self, message: str, detail: str = "", spares=()):
        super().__init__(message)
        self.message, self.detail, self.spares = message, detail, tuple(spares)


class Warn(Exception):
    """A check found a working Function that is limited or wasteful: ``message`` says what it costs and the fix."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.message, self.detail = message, detail


class Skip(Exception):
    """A check does not apply; the message says why and what that means."""


def verdict(problems, detail=""):
    """Raise for ``problems``, a list of (level, text) with level "fail" or "warn": Fail with the failing texts if
    there are any (the warnings then go to detail), else Warn; return when there are none."""
    failing = list(dict.fromkeys(text for level, text in problems if level == "fail"))
    warning = list(dict.fromkeys(text for level, text in problems if level == "warn"))
    if failing:
        raise Fail("; ".join(failing[:3]), "\n".join(warning + [detail]).strip())
    if warning:
        raise Warn("; ".join(warning[:3]), detail)


def describe(exc: BaseException) -> str:
    """'TypeError: first line of the message', for one-line reports."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].rstrip('.') if text else ''}".strip()


def is_function_class(fn) -> bool:
    return isinstance(fn, type) and issubclass(fn, torch.autograd.Function)


@dataclass
class Args:
    """One call's arguments: ``args`` and ``kwargs``; ``diff``: the positions that require grad."""

    args: tuple
    kwargs: dict
    diff: list

    @property
    def tensors(self) -> list:
        """The tensors that require grad, in order."""
        return [self.args[i] for i in self.diff]

    def replace(self, tensors) -> Args:
        """The same call with the differentiable inputs replaced by ``tensors`` (for gradcheck, torch.func)."""
        args = list(self.args)
        for i, x in zip(self.diff, tensors):
            args[i] = x
        return Args(tuple(args), self.kwargs, self.diff)


_COMPLEX = {torch.float64: torch.complex128, torch.float32: torch.complex64, torch.float16: torch.complex32}


def _copy(a, dtype, requires_grad, scale):
    if not isinstance(a, torch.Tensor):
        return a
    x = a.detach()
    if x.is_floating_point() or x.is_complex():
        if dtype is not None and x.is_complex():  # a floating dtype asked of a complex input: its complex twin
            dtype = _COMPLEX.get(dtype, dtype) if dtype.is_floating_point else dtype
        x = x.to(dtype or x.dtype) * scale if requires_grad else x.to(dtype or x.dtype)
    return x.clone().requires_grad_(requires_grad)


class Target:
    """The function under test and its sample inputs (never modified: every check gets copies)."""

    def __init__(self, fn, inputs, *, kwargs=None, reference=None, seed=None, compile_backend="aot_trace",
                 true_gradient=True):
        if is_function_class(fn):
            self.call, self.name = fn.apply, fn.__qualname__
        elif callable(fn):
            name = getattr(fn, "_qualname", None) or getattr(fn, "__qualname__", None)  # _qualname: a custom op's
            self.call, self.name = fn, name or repr(fn)
        else:
            raise TypeError(f"check_function: {fn!r} is neither an autograd.Function subclass nor callable")
        self.fn, self.inputs, self.kwargs = fn, tuple(inputs), dict(kwargs or {})
        self.diff = [i for i, a in enumerate(self.inputs) if isinstance(a, torch.Tensor) and a.requires_grad]
        if not self.diff:
            raise ValueError("check_function: no sample input requires grad; mark the tensors to differentiate "
                             "with .requires_grad_() (e.g. torch.randn(4, 5, dtype=torch.float64, requires_grad=True))")
        for i in self.diff:
            if not (self.inputs[i].is_floating_point() or self.inputs[i].is_complex()):
                raise ValueError(f"check_function: input {i} requires grad but is {self.inputs[i].dtype}; "
                                 "only floating-point and complex tensors can be differentiated")
        # The dtype of finite differences: float64 (complex128 for complex inputs), unless forward refuses it; then
        # the inputs' own dtype, and ``narrow`` says why (settle_dtype).
        self.wide, self.narrow = torch.float64, ""
        self.reference, self.seed, self.compile_backend = reference, seed, compile_backend
        self.true_gradient = true_gradient
        self.auto_seed = False  # set by settle_randomness: forward draws random numbers, every call is reseeded
        self.other_generators = False  # ... from NumPy's or Python's generator too
        self.random = ""  # set by settle_randomness: why no comparison of two calls can be trusted
        # An in-place Function (ctx.mark_dirty) cannot be applied to a leaf that requires grad: autograd refuses
        # before it runs. Once a call says so, ``run`` hands it clones (non-leaves), as real code does.
        self.inplace = False

    def make(self, dtype=None, grad=None, scale=1.0, nonleaf=False) -> Args:
        """Fresh copies of the inputs: floating tensors in ``dtype`` (default: their own), the inputs at the
        positions in ``grad`` (default: the ones that require grad) requiring grad and multiplied by ``scale``;
        ``nonleaf``: those returned as clones, so that an in-place Function (``mark_dirty``) may modify them."""
        grad = self.diff if grad is None else grad
        args = tuple(_copy(a, dtype, i in grad, scale) for i, a in enumerate(self.inputs))
        if nonleaf:
            args = tuple(a.clone() if i in grad else a for i, a in enumerate(args))
        kwargs = {k: _copy(v, dtype, False, 1.0) for k, v in self.kwargs.items()}
        return Args(args, kwargs, list(grad))

    def run(self, a: Args, fn=None, reseed=True):
        """``fn(*a.args, **a.kwargs)`` (default: the function under test), reseeded first if it draws random numbers
        (``reseed=False``: by the caller, outside a region torch.compile traces, where torch.manual_seed breaks the graph)."""
        if self.seed is not None and reseed:
            self.reseed()
        args = a.args
        if self.inplace:  # a leaf: one requiring grad, or a dual tensor of forward-mode gradcheck (its primal shared)
            args = tuple(x.clone() if i in a.diff and isinstance(x, torch.Tensor) and x.is_leaf else x
                         for i, x in enumerate(args))
        return (fn or self.call)(*args, **a.kwargs)

    def first_call(self):
        """Call the function once on fresh inputs, and again on non-leaf copies if autograd refused the in-place
        change of a leaf (an in-place Function is called on non-leaves); return (inputs, outputs)."""
        a = self.make()
        try:
            return a, self.run(a)
        except RuntimeError as exc:
            if "leaf Variable that requires grad" not in str(exc) or self.inplace:
                raise
        self.inplace = True
        a = self.make()
        return a, self.run(a)

    def settle_dtype(self):
        """Call forward once in float64: if it raises there while it ran in the inputs' own dtype, every check runs in
        that dtype (with its tolerances) and ``narrow`` says so, once, instead of each check failing on float64."""
        if all(self.inputs[i].dtype in (torch.float64, torch.complex128) for i in self.diff):
            return  # the first call was in float64
        try:
            outputs(self.run(self.make(torch.float64)))
        except Exception as exc:  # noqa: BLE001 - the Function's own refusal, reported once by gradcheck
            own = self.inputs[self.diff[0]].dtype
            self.wide = own.to_real() if own.is_complex else own
            self.narrow = (f"forward refuses float64 ({describe(exc)[:120]}), so every check runs in "
                           f"{str(self.wide).removeprefix('torch.')} with its tolerances, finite differences included")

    def reference_dtypes(self):
        """(dtype, name) pairs the reference is compared in: float64 tight and float32 loose, or the inputs' own."""
        pairs = ((torch.float64, "float64"), (torch.float32, "float32"))
        return [(d, n) for d, n in pairs if d == self.wide] if self.narrow else pairs

    def reference_kinds(self) -> str:
        if self.narrow:
            return f"{str(self.wide).removeprefix('torch.')}, normal/large/small inputs"
        return "float64 tight, float32 loose, normal/large/small inputs"

    def fd_options(self) -> dict:
        """gradcheck's step and tolerances for finite differences in ``wide``: its defaults in float64, wider below."""
        if self.wide == torch.float64:
            return {}
        if self.wide == torch.float32:
            return {"eps": 1e-3, "atol": 1e-2, "rtol": 1e-2}
        return {"eps": 3e-2, "atol": 1e-1, "rtol": 1e-1}

    def settle_randomness(self):
        """Call forward twice on the same inputs: a forward that draws random numbers (different outputs) is reseeded
        before every call (torch.manual_seed(0)), so that each comparison compares one draw with itself; if even
        that does not make two calls agree (NumPy or Python random, a clock), ``random`` says so and the comparing
        checks are skipped. Never fails: comparing two draws is no finding."""
        if self.seed is not None:
            return

        def twice():
            first, second = (outputs(self.run(self.make())) for _ in range(2))
            return len(first) == len(second) and all(
                agree("", x.detach(), y.detach()).close for x, y in zip(first, second))

        if twice():
            return
        self.seed, self.auto_seed = 0, True
        if not twice() and "numpy" in sys.modules:  # NumPy or Python random: reseed those too
            self.other_generators = True
        if not twice():
            self.seed, self.auto_seed, self.other_generators = None, False, False
            self.random = ("forward returns other values on every call with the same inputs, even after seeding "
                           "torch's, NumPy's and Python's generators (a clock, another library's generator?): two calls "
                           "cannot be compared; draw with torch's generator or pass the noise as an input")

    def reseed(self):
        """torch.manual_seed(seed) when every call is reseeded (for a caller that calls with reseed=False); NumPy's and
        Python's generators too when forward draws from them (``check_function`` restores all three afterwards)."""
        if self.seed is not None:
            torch.manual_seed(self.seed)
            if self.other_generators:
                random.seed(self.seed)
                sys.modules["numpy"].random.seed(self.seed)

    def comparable(self):
        """Skip a check that compares two calls when forward cannot be made to repeat itself."""
        if self.random:
            raise Skip(f"not compared: {self.random}")

    def differentiable_fn(self, a: Args, reseed=True):
        """fn(*differentiable inputs) -> tuple of floating outputs, the rest of ``a`` fixed (gradcheck, torch.func)."""
        def f(*tensors):
            return tuple(o for o in outputs(self.run(a.replace(tensors), reseed=reseed)) if inexact(o))
        return f


def inexact(x) -> bool:
    """A floating or complex tensor: one that can be differentiated."""
    return x.is_floating_point() or x.is_complex()


def outputs(out) -> list:
    """The tensors among what the function returned (a tensor, or a tuple/list of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        found = [x for o in out for x in outputs(o)]
        if found:
            return found
    raise Fail(f"the function returned {type(out).__name__} {_short(out)}, not a tensor: forward must return the "
               "output tensor(s) (a tensor or a tuple of tensors)")


def differentiable(outs) -> list:
    """The outputs gradients flow back from; Fail when there is none."""
    found = [o for o in outs if inexact(o) and o.requires_grad]
    if not found:
        raise Fail("no output requires grad although inputs do: forward must compute its outputs from the inputs "
                   "(not under .detach() or a new tensor), and not mark every output non-differentiable")
    return found


def _short(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def random_like(outs, seed=8191) -> list:
    """A random upstream gradient for each tensor in ``outs`` (same shape, dtype, device), reproducibly (from a seed of
    its own: sample inputs drawn after torch.manual_seed(0) would otherwise be equal to it)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=g, dtype=torch.complex128 if o.is_complex() else torch.float64).to(o.device, o.dtype)
            for o in outs]


def grads(outs, inputs, grad_outs, **kwargs) -> tuple:
    return torch.autograd.grad(outs, inputs, grad_outs, allow_unused=True, **kwargs)


def agree(name, mine, ref, dtype=None) -> Comparison:
    """``compare`` for the checks: within the dtype's tolerances, relative to each element (|a - b| <= atol + rtol·|b|,
    as torch.testing.assert_close) and to the tensor's magnitude, so that rounding in a sum of large terms (an element
    near 0 computed from values near 300) is no finding; complex tensors compared as (real, imaginary) pairs."""
    if isinstance(mine, torch.Tensor) and isinstance(ref, torch.Tensor) and mine.dtype == ref.dtype and mine.is_complex():
        mine, ref = torch.view_as_real(mine.detach().resolve_conj()), torch.view_as_real(ref.detach().resolve_conj())
    if not (isinstance(ref, torch.Tensor) and ref.is_floating_point() and ref.numel()):
        return compare(name, mine, ref)
    dtype = dtype or ref.dtype  # whose rounding to allow for: the values' own, or what they went through (autocast)
    rtol, atol = tolerances(dtype) if dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16) \
        else (1e-7, 1e-9)
    finite = ref.detach()[ref.detach().isfinite()]
    scale = finite.abs().max().item() if finite.numel() else 0.0
    return compare(name, mine, ref, rtol=rtol, atol=atol + min(rtol, 64 * torch.finfo(dtype).eps) * scale)


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit the same values (NaN equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    equal = a == b
    if a.is_floating_point() or a.is_complex():
        equal = equal | (a.isnan() & b.isnan())
    return bool(equal.all())


def custom_nodes(outs) -> list:
    """The backward nodes of custom autograd Functions in the graph that produced ``outs``, outputs first."""
    seen, found = set(), []
    stack = [o.grad_fn for o in outs if o.grad_fn is not None]
    while stack and len(seen) < 100_000:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if hasattr(node, "_forward_cls"):
            found.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return found


def function_name(node) -> str:
    return node._forward_cls.__qualname__


def expected_grads(node) -> list:
    """For each input of the node's forward: the metadata (shape, dtype, device) autograd's engine expects of
    its gradient, or None where no gradient is needed. The i-th input needing a gradient is the i-th input
    edge that exists (``next_functions`` lists the tensor inputs, with (None, 0) for those not requiring grad)."""
    edges = iter([(n, nr) for n, nr in node.next_functions if n is not None])
    expected = []
    for need in node.needs_input_grad:
        edge = next(edges, None) if need else None
        expected.append(None if edge is None else edge[0]._input_metadata[edge[1]])
    return expected


def upstream(node, grad_outputs) -> list:
    """``grad_outputs`` as the node's backward receives them: absent ones (e.g. of a non-differentiable
    output) materialized as zeros of that output's shape, as autograd does by default."""
    meta = list(node._input_metadata)
    found = []
    for i, g in enumerate(grad_outputs):
        if g is None and i < len(meta):
            g = torch.zeros(tuple(meta[i].shape), dtype=meta[i].dtype, device=meta[i].device)
        found.append(g)
    return found


def probe(target: Target, a: Args, visit, grad_outs=None):
    """Run forward on ``a`` and then backward, calling ``visit(node, grad_outputs)`` for every custom Function
    before autograd does (a pre-hook on its node); ``visit`` calls the Function's backward itself, and sees
    what it returns before the engine validates it. Returns the engine's own exception, if it raised."""
    outs = differentiable(outputs(target.run(a)))
    nodes = custom_nodes(outs)
    if not nodes:
        raise Skip("no autograd.Function in the graph of the outputs: nothing to look at")
    handles = [node.register_prehook(lambda g, node=node: visit(node, upstream(node, g))) for node in nodes]
    try:
        grads(outs, a.tensors, grad_outs or random_like(outs))
    except Exception as exc:  # noqa: BLE001 - the Function's own error; the visits already saw its cause
        return exc
    finally:
        for h in handles:
            h.remove()
    return None
