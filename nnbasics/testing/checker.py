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
import signal
import threading
import time
from dataclasses import asdict, dataclass

from .checks import CHECKS
from .target import Fail, Skip, Target, describe

STATUSES = ("pass", "fail", "skip")


@dataclass
class Result:
    """One check's outcome. ``status``: pass, fail or skip; ``message``: one line; ``detail``: the long text
    (e.g. gradcheck's Jacobians), if any; ``seconds``: how long the check took."""

    name: str
    status: str
    message: str
    detail: str = ""
    seconds: float = 0.0

    def __str__(self):
        return f"{self.status.upper():<4}  {self.name:<16} {self.message}"


@dataclass
class Report:
    """What ``check_function`` found: ``results`` maps each check's name to its ``Result``."""

    target: str
    results: dict

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped ones do not count)."""
        return not self.failed

    @property
    def failed(self) -> list:
        return [name for name, r in self.results.items() if r.status == "fail"]

    def __str__(self):
        counts = {s: sum(r.status == s for r in self.results.values()) for s in STATUSES}
        head = f"check_function({self.target}): {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
        return "\n".join([head] + [str(r) for r in self.results.values()])

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "results": [asdict(r) for r in self.results.values()]}


class CheckTimeout(BaseException):
    """A check ran past its time limit (a BaseException, so the code under test cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds):
    """Interrupt the block after ``seconds`` (SIGALRM: the main thread on POSIX only; elsewhere unbounded).
    Python code is interrupted at once, a long C++ call when it returns."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
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


def _run(name, check, target, timeout) -> Result:
    start = time.perf_counter()
    try:
        with time_limit(timeout):
            message, status, detail = check(target), "pass", ""
    except Fail as exc:
        message, status, detail = exc.message, "fail", exc.detail
    except Skip as exc:
        message, status, detail = str(exc), "skip", ""
    except CheckTimeout as exc:
        message, status, detail = (f"{exc}: the function under test (or compiling it) did not finish; look for an "
                                   "endless loop, or pass a larger timeout=", "fail", "")
    except Exception as exc:  # noqa: BLE001 - whatever the function under test raised is this check's finding
        message, status, detail = f"the function under test raised {describe(exc)}", "fail", str(exc)
    return Result(name, status, " ".join(message.split()), detail, round(time.perf_counter() - start, 3))


def check_function(fn, *sample_inputs, reference=None, kwargs=None, seed=None, checks=None, timeout=120.0,
                   compile_backend="inductor") -> Report:
    """Run every check (``nnbasics.testing.checks.CHECKS``) on ``fn`` and return the ``Report``.

    fn: an ``autograd.Function`` subclass (called through ``.apply``) or any callable built on Functions.
    sample_inputs: what you would pass to it; the tensors that require grad are the ones differentiated,
        other arguments are passed as they are. Each check works on its own copies (float64 where it
        compares with finite differences).
    reference: the same computation with built-in ops, for the ``reference`` check (else skipped).
    kwargs: keyword arguments passed on every call. seed: reseed torch before every call (random Functions).
    checks: the names of the checks to run (default: all). timeout: seconds per check.
    compile_backend: what the ``compile`` check hands to ``torch.compile`` (``"aot_eager"`` is quicker).
    """
    target = Target(fn, sample_inputs, kwargs=kwargs, reference=reference, seed=seed, compile_backend=compile_backend)
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"check_function: unknown check(s) {unknown}; choose from {list(CHECKS)}")
    # One call first: if the function hangs, every check would wait out its timeout in turn.
    first = _run("first call", lambda t: (t.run(t.make()), "")[1], target, timeout)
    if first.message.startswith("timed out"):
        return Report(target.name, {n: Result(n, "fail", f"not run: the first call {first.message}") for n in names})
    return Report(target.name, {n: _run(n, CHECKS[n], target, timeout) for n in names})


def assert_function_ok(fn, *sample_inputs, **options) -> Report:
    """``check_function`` for pytest: raises AssertionError with the report's text when a check fails."""
    report = check_function(fn, *sample_inputs, **options)
    if not report.ok:
        raise AssertionError(str(report))
    return report
