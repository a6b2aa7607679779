"""``check_function``: put any autograd Function through every check at once, and read one line per check.

    from nnbasics.testing import check_function
    report = check_function(MyFunction, x, w, reference=my_reference)
    print(report)            # one line per check; each failure says what is wrong and how to fix it
    assert report.ok

The checks live in ``nnbasics.testing.checks``; ``docs/checker.md`` explains each and walks through
a broken first attempt to a clean report.
"""
from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch

from .checks import CHECKS
from .checks.diagnose import unsaved_name
from .target import Fail, Skip, Target, Warn, describe, differentiable, function_name, outputs, probe

STATUSES = ("pass", "warn", "fail", "skip")

# A check is skipped, "blocked by X", when X failed: its own finding would only repeat X's (a wrong-shaped
# gradient also fails gradcheck; an output kept on ctx is also a leak; a write into grad_output also breaks an
# expanded grad_output and double backward; an intermediate kept on ctx is a constant to double backward). When forward or backward raises on the sample inputs, that is
# gradcheck's one failure and every other check is blocked by it.
DEPENDS = {
    "gradcheck": ("grad_metadata", "mutation"),  # an undeclared write also corrupts finite differences
    "gradgradcheck": ("grad_metadata", "mutation", "gradcheck", "ctx_tensors"),  # an intermediate on ctx: a constant
    "torch_func": ("grad_metadata", "mutation"),
    "grad_layouts": ("grad_metadata", "mutation"),
    "needs_input_grad": ("grad_metadata",),
    "leak": ("ctx_tensors", "grad_metadata"),
    "compile": ("grad_metadata", "mutation"),
    "compile_func": ("grad_metadata", "mutation", "gradcheck"),
    "autocast": ("grad_metadata", "mutation", "gradcheck", "reference"),  # a wrong value is wrong under autocast too
    "reference": ("grad_metadata", "mutation", "gradcheck"),
}
_FIRST = ("mutation", "ctx_tensors", "grad_metadata", "gradcheck", "reference")  # run before what they may block


@dataclass
class Result:
    """One check's outcome. ``status``: pass, warn, fail or skip; ``message``: one line; ``detail``: the long
    text (e.g. gradcheck's Jacobians), if any; ``seconds``: how long the check took."""

    name: str
    status: str
    message: str
    detail: str = ""
    seconds: float = 0.0
    spares: tuple = field(default=(), repr=False)  # the dependent checks a failure does not block

    def __str__(self):
        return f"{self.status.upper():<4}  {self.name:<16} {self.message}"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "spares"}


@dataclass
class Report:
    """What ``check_function`` found: ``results`` maps each check's name to its ``Result``; ``strict``: a warning
    counts as a failure for ``ok``."""

    target: str
    results: dict
    strict: bool = False

    @property
    def ok(self) -> bool:
        """True when no check failed (nor warned, if strict); skipped ones do not count."""
        return not self.failed and not (self.strict and self.warned)

    @property
    def failed(self) -> list:
        return [name for name, r in self.results.items() if r.status == "fail"]

    @property
    def warned(self) -> list:
        return [name for name, r in self.results.items() if r.status == "warn"]

    def __str__(self):
        n = {s: sum(r.status == s for r in self.results.values()) for s in STATUSES}
        head = (f"check_function({self.target}): {n['pass']} passed, {n['warn']} warned, {n['fail']} failed, "
                f"{n['skip']} skipped" + (" (strict: warnings fail)" if self.strict and n["warn"] else ""))
        return "\n".join([head] + [str(r) for r in self.results.values()])

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "strict": self.strict,
                "results": [r.to_dict() for r in self.results.values()]}


class CheckTimeout(BaseException):
    """A check ran past its time limit (a BaseException, so the code under test cannot swallow it)."""


def _main_thread():
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def time_limit(seconds):
    """Interrupt the block after ``seconds`` (SIGALRM: the main thread on POSIX only; elsewhere unbounded).
    Python code is interrupted at once, a long C++ call when it returns."""
    if not (seconds and hasattr(signal, "setitimer") and _main_thread()):
        yield
        return

    def expire(signum, frame):
        raise CheckTimeout(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_limit(gib):
    """Cap the process's address space at what it uses now plus ``gib`` GiB (RLIMIT_AS, Linux only; None: no cap), so
    that a function that keeps allocating gets MemoryError (or torch's "can't allocate memory") instead of the
    machine's memory. Virtual size is what is capped: not for CUDA, which reserves far more than it uses."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            now = int(f.read().split()[0]) * resource.getpagesize()
    except (ImportError, OSError, ValueError):
        now = None
    if not gib or now is None:
        yield
        return
    if "numpy" in sys.modules:  # the checker reseeds NumPy's random state: its lazy import comes before the cap
        import numpy.random  # noqa: F401
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = now + int(gib * 2 ** 30)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _Interrupts:
    """Tells a real Ctrl-C (SIGINT: re-raised, the checker stops) from a KeyboardInterrupt the function under test
    raises itself (a finding like any other exception)."""

    def __init__(self):
        self.real = False

    @contextlib.contextmanager
    def watch(self):
        if not _main_thread():
            yield
            return

        def interrupted(signum, frame):
            self.real = True
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, interrupted)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _run(name, check, target, timeout, interrupts) -> Result:
    start = time.perf_counter()
    detail, spares = "", ()
    try:
        with time_limit(timeout), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's warnings about the user's code are not the user's diagnosis
            message, status = check(target), "pass"
    except Fail as exc:
        message, status, detail, spares = exc.message, "fail", exc.detail, exc.spares
    except Warn as exc:
        message, status, detail = exc.message, "warn", exc.detail
    except Skip as exc:
        message, status = str(exc), "skip"
    except CheckTimeout as exc:
        message, status = ((f"{exc}: the function under test (or compiling it) did not finish; look for an endless "
                            "loop, or pass a larger timeout="), "fail")
    except SystemExit as exc:
        message, status = ((f"the function under test called sys.exit({exc.code!r}) (SystemExit): a Function must "
                            "return or raise, never end the process"), "fail")
    except KeyboardInterrupt:
        if interrupts.real:
            raise
        message, status = "the function under test raised KeyboardInterrupt itself: a Function must not", "fail"
    except Exception as exc:  # noqa: BLE001 - whatever the function under test raised is this check's finding
        message, status, detail = f"the function under test raised {describe(exc)}", "fail", str(exc)
    return Result(name, status, " ".join(str(message).split()), detail, round(time.perf_counter() - start, 3), spares)


@contextlib.contextmanager
def _other_generators_kept():
    """Python's and (if loaded) NumPy's global random states, restored after the checks."""
    numpy = sys.modules.get("numpy")
    state, numpy_state = random.getstate(), numpy.random.get_state() if numpy else None
    try:
        yield
    finally:
        random.setstate(state)
        if numpy:
            numpy.random.set_state(numpy_state)


def _crash(t):
    """Forward, then each Function's own backward, once on the sample inputs (the in-place case found out on the
    way); raise what they raise, as one finding that blocks every other check."""
    try:
        _, out = t.first_call()
    except Exception as exc:  # noqa: BLE001 - the function's own error, named as such
        raise Fail(f"forward raised {describe(exc)} on the sample inputs; every other check needs a working call",
                   str(exc)) from None
    differentiable(outputs(out))
    t.settle_dtype()
    t.settle_randomness()
    raised = []

    def visit(node, grad_outputs):
        try:
            node.apply(*[g.clone() if isinstance(g, torch.Tensor) else g for g in grad_outputs])
        except Exception as exc:  # noqa: BLE001
            raised.append((function_name(node), exc, getattr(node, "_forward_cls", None)))

    probe(t, t.make(), visit)
    if raised:
        name, exc, cls = raised[0]
        why = unsaved_name(cls, exc)  # a NameError: what ctx saved instead
        raise Fail(f"{name}.backward raised {describe(exc)}{': ' + why if why else ''}; every other check needs a "
                   "working backward", str(exc))
    return "forward and backward run on the sample inputs"


def check_function(fn, *sample_inputs, reference=None, kwargs=None, seed=None, checks=None, timeout=120.0,
                   compile_backend="aot_trace", true_gradient=True, strict=False) -> Report:
    """Run every check (``nnbasics.testing.checks.CHECKS``) on ``fn`` and return the ``Report``.

    fn: an ``autograd.Function`` subclass (called through ``.apply``), a ``torch.library`` custom op, or any
        callable built on Functions.
    sample_inputs: what you would pass to it; the tensors that require grad are the ones differentiated,
        other arguments are passed as they are. Each check works on its own copies (float64 where it
        compares with finite differences).
    reference: the same computation with built-in ops, for the ``reference`` check (else skipped).
    kwargs: keyword arguments passed on every call. seed: reseed torch before every call (random Functions).
    checks: the names of the checks to run (default: all). timeout: seconds per check.
    compile_backend: what the ``compile`` check hands to ``torch.compile``: ``"aot_trace"`` (Dynamo and AOTAutograd,
        no code generation: what a Function must pass), or any backend name, e.g. ``"inductor"`` (its code too).
    true_gradient: False for a gradient that is deliberately not the derivative (straight-through estimators,
        gradient reversal, surrogate gradients): it is not compared with finite differences or the reference.
    strict: a warning (limited or wasteful, but right) makes ``report.ok`` False too.
    """
    target = Target(fn, sample_inputs, kwargs=kwargs, reference=reference, seed=seed, compile_backend=compile_backend,
                    true_gradient=true_gradient)
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"check_function: unknown check(s) {unknown}; choose from {list(CHECKS)}")
    interrupts = _Interrupts()
    results = {}
    # The caller's random state is left as it was: reseeding (seed=, or a forward found to draw) stays in here.
    rng = torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else [])
    with interrupts.watch(), rng, _other_generators_kept():
        crash = _run("gradcheck" if "gradcheck" in names else names[0], _crash, target, timeout, interrupts)
        if crash.status == "fail":
            results[crash.name] = crash
        order = [n for n in _FIRST if n in names] + [n for n in names if n not in _FIRST]
        for name in order:
            if name in results:
                continue
            blocker = crash.name if crash.status == "fail" else next(
                (d for d in DEPENDS.get(name, ()) if d in results and results[d].status == "fail"
                 and name not in results[d].spares), None)
            if blocker:
                results[name] = Result(name, "skip", f"blocked by {blocker}: it depends on what {blocker} found wrong")
            else:
                results[name] = _run(name, CHECKS[name], target, timeout, interrupts)
    return Report(target.name, {n: results[n] for n in names}, strict=strict)


def assert_function_ok(fn, *sample_inputs, **options) -> Report:
    """``check_function`` for pytest: raises AssertionError with the report's text when a check fails."""
    report = check_function(fn, *sample_inputs, **options)
    if not report.ok:
        raise AssertionError(str(report))
    return report
