"""Check autograd Functions from the command line: your own, or nnbasics' ops against PyTorch.

The code of ``python -m nnbasics.check`` (its usage: ``nnbasics/check.py``), run in the command's own process or,
for a FILE.py:NAME target, in a child of the check server (``nnbasics.checkserver``): the same code either way.
"""
import ast
import faulthandler
import importlib
import importlib.util
import json
import pathlib
import sys

import torch

from ..checkserver import client
from ..cli import ConfigError, Parser, resolve_device
from ..functional import IMPLS
from .checker import CheckTimeout, check_function, memory_limit, time_limit
from .checks import CHECKS
from .compare import compare
from .messages import LANGS, language, render
from .registry import OPS, run_both

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
SERVER_HELP = ("A FILE.py:NAME target is checked by a check server, a warm process with torch, Dynamo and "
               "AOTAutograd imported, which the first such command starts and the later ones reuse (the same output "
               "and exit status; each run loads your module fresh); it ends after 10 minutes idle "
               "(NNBASICS_CHECK_SERVER_IDLE seconds) or with --stop-server, and --no-server or "
               "NNBASICS_CHECK_SERVER=0 turn it off (docs/checker.md).")
TARGET_DTYPES = {**DTYPES, "complex128": torch.complex128, "complex64": torch.complex64}  # --shapes of a target


def make_parser() -> Parser:
    """The command line of ``python -m nnbasics.check``."""
    parser = Parser(prog="python -m nnbasics.check", description=__doc__.split("\n\n")[0], epilog=SERVER_HELP)
    parser.add_argument("target", nargs="?", help="FILE.py:NAME or package.module:NAME: an autograd.Function subclass "
                        "or a function built on Functions; omit it to check nnbasics' own ops against PyTorch")
    parser.add_argument("--shapes", nargs="+", metavar="SHAPE", help="with a target: one random input per shape "
                        "(4x5, 5, ...), each requiring grad, instead of the module's sample inputs")
    parser.add_argument("--reference", metavar="NAME", help="with a target: the module's function to compare with "
                        "(default: its `reference`, if any)")
    parser.add_argument("--checks", metavar="A,B", help=f"with a target: only these checks (default: all of {', '.join(CHECKS)})")
    parser.add_argument("--json", action="store_true", help="with a target: print the report as JSON")
    parser.add_argument("--compile-backend", default="aot_trace", help="with a target: torch.compile's backend for the "
                        "compile check (default: aot_trace, Dynamo and AOTAutograd without code generation; inductor "
                        "also compiles and runs Inductor's code, seconds more)")
    parser.add_argument("--timeout", type=float, default=120.0, help="with a target: seconds per check, and for "
                        "importing the target's module (default: 120)")
    parser.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE", help="with a target: a keyword "
                        "argument for every call, VALUE a Python literal (repeatable), e.g. --kwarg dim=0")
    parser.add_argument("--seed", type=int, help="with a target: reseed torch before every call (random Functions)")
    parser.add_argument("--strict", action="store_true", help="with a target: a warning fails too (exit 1)")
    parser.add_argument("--not-true-gradient", action="store_true", help="with a target: its gradient is deliberately "
                        "not the derivative (straight-through, gradient reversal, surrogate): not compared with "
                        "finite differences or the reference's")
    parser.add_argument("--max-memory", type=float, default=8.0, metavar="GIB", help="with a target: GiB of address "
                        "space the checks may add (default: 8; 0: no cap; not applied with CUDA)")
    parser.add_argument("--dtype", choices=TARGET_DTYPES, default="float64", help="dtype of --shapes inputs (complex "
                        "too), or of the op parity comparison without a target (default: float64)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--impl", choices=IMPLS, default="custom", help="without a target: which "
                        "hand-written implementation (default: custom)")
    parser.add_argument("--op", action="append", help="without a target: only this op (repeatable); default: all")
    parser.add_argument("--lang", choices=LANGS, help="with a target: the language of the report's lines (default: pt "
                        "for a Portuguese locale in LC_ALL, LC_MESSAGES or LANG, else en); --json stays English")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every comparison (without a target), "
                        "or each failure's full text (with one)")
    parser.add_argument("--no-server", action="store_true", help="with a target: check in this process, not in the "
                        "check server (also NNBASICS_CHECK_SERVER=0)")
    parser.add_argument("--stop-server", action="store_true", help="stop every check server of this user and exit")
    return parser


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.stop_server:
        return client.stop_servers()
    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.target is None:
        return check_ops(parser, args, device)
    if not faulthandler.is_enabled():  # a crash of the process itself (a segfault in torch or an extension) says where
        try:
            faulthandler.enable()
        except (ValueError, OSError, AttributeError):  # a stderr without a file descriptor (captured): no report
            pass
    try:
        return check_target(parser, args, device)
    except KeyboardInterrupt:
        print("python -m nnbasics.check: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- a Function of yours

class TargetError(ValueError):
    """A target, or its sample inputs, that cannot be checked; the message names the bad value."""


def load(spec: str, timeout=None):
    """(the object named by 'FILE.py:NAME' or 'package.module:NAME', its module)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise TargetError(f"target {spec!r}: expected FILE.py:NAME or package.module:NAME")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = pathlib.Path(where)
        if not path.is_file():
            raise TargetError(f"target {spec!r}: no such file {where}")
        sys.path.insert(0, str(path.resolve().parent))  # so that the file can import its neighbours
        module_name = f"_nnbasics_check_{path.stem}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # dataclasses, pickling and torch.compile look modules up by name
        run_module = lambda: loader.loader.exec_module(module)
    else:
        module = None
        run_module = lambda: importlib.import_module(where)
    try:
        with time_limit(timeout):
            module = run_module() or module
    except CheckTimeout:
        raise TargetError(f"target {spec!r}: importing {where} did not finish within {timeout:g} s (--timeout): its "
                          "top level runs forever or waits; keep work out of the module's top level") from None
    except SystemExit as exc:
        raise TargetError(f"target {spec!r}: importing {where} called sys.exit({exc.code!r}): guard the script part "
                          "with `if __name__ == '__main__':`") from None
    except KeyboardInterrupt:
        raise TargetError(f"target {spec!r}: importing {where} raised KeyboardInterrupt") from None
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raised, named in one line
        text = str(exc).strip().splitlines()
        raise TargetError(f"target {spec!r}: importing {where} raised {type(exc).__name__}: "
                          f"{text[0] if text else ''}") from None
    if not hasattr(module, name):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, torch.autograd.Function)
                       and v.__module__ == module.__name__)
        raise TargetError(f"target {spec!r}: {where} defines no {name}" + (f"; its Functions: {', '.join(found)}" if found else ""))
    obj = getattr(module, name)
    if not callable(obj):
        raise TargetError(f"target {spec!r}: {name} is a {type(obj).__name__}, not an autograd.Function or a function")
    return obj, module


def parse_shape(text: str) -> tuple:
    try:
        shape = tuple(int(n) for n in text.lower().split("x")) if text not in ("", "()") else ()
    except ValueError:
        raise TargetError(f"--shapes {text}: a shape is sizes joined by x, e.g. 4x5 or 5") from None
    if any(n < 0 for n in shape):
        raise TargetError(f"--shapes {text}: sizes cannot be negative")
    return shape


def sample_inputs(module, spec: str, shapes, dtype, device) -> tuple:
    if shapes:
        return tuple(torch.randn(parse_shape(s), dtype=dtype, device=device, requires_grad=True) for s in shapes)
    source = getattr(module, "sample_inputs", getattr(module, "SAMPLE_INPUTS", None))
    if source is None:
        raise TargetError(f"target {spec!r}: its module defines neither sample_inputs() nor SAMPLE_INPUTS; add one "
                          "(returning the arguments, tensors to differentiate with requires_grad=True) or pass --shapes 4x5")
    try:
        inputs = source() if callable(source) else source
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001 - the user's function, in one line
        raise TargetError(f"target {spec!r}: sample_inputs() raised {type(exc).__name__}: {exc}") from None
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    return tuple(a.detach().to(device).requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in inputs)


def parse_kwargs(items) -> dict:
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise TargetError(f"--kwarg {item}: expected NAME=VALUE, e.g. --kwarg dim=0")
        try:
            found[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise TargetError(f"--kwarg {item}: {value!r} is not a Python literal (a number, string in quotes, "
                              "True/False/None, tuple or list)") from None
    return found


def check_target(parser, args, device) -> int:
    cap = None if device.type == "cuda" else args.max_memory
    try:
        with memory_limit(cap):
            report = _check_target(args, device)
    except (TargetError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    except (MemoryError, ImportError) as exc:  # the checker's own allocations or imports, past the cap
        if not cap:
            raise
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        parser.error(f"--max-memory {args.max_memory:g}: checking needs more than {args.max_memory:g} GiB of address "
                     f"space above what the process uses ({type(exc).__name__}: {reason}); raise it, or pass 0 for no cap")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render(report, language(args.lang)))
        if args.verbose:
            for r in report.results.values():
                if r.status in ("fail", "warn") and r.detail:
                    print(f"\n--- {r.name}\n{r.detail}")
    return 0 if report.ok else 1


def _check_target(args, device):
    if args.max_memory < 0:
        raise TargetError(f"--max-memory {args.max_memory:g}: GiB cannot be negative (0: no cap)")
    if args.timeout <= 0:
        raise TargetError(f"--timeout {args.timeout:g}: seconds must be positive")
    kwargs = parse_kwargs(args.kwarg)
    fn, module = load(args.target, args.timeout)
    reference = getattr(module, args.reference or "reference", None)
    if args.reference and not callable(reference):
        raise TargetError(f"--reference {args.reference}: {module.__name__} defines no function {args.reference}")
    inputs = sample_inputs(module, args.target, args.shapes, TARGET_DTYPES[args.dtype], device)
    checks = None
    if args.checks:
        checks = [c.strip() for c in args.checks.split(",") if c.strip()]
        unknown = [c for c in checks if c not in CHECKS]
        if unknown:
            raise TargetError(f"--checks {args.checks}: unknown {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    return check_function(fn, *inputs, reference=reference if callable(reference) else None, checks=checks,
                          timeout=args.timeout, compile_backend=args.compile_backend, kwargs=kwargs,
                          seed=args.seed, strict=args.strict, true_gradient=not args.not_true_gradient)


# --------------------------------------------------------------------------- nnbasics' own ops

def check_ops(parser, args, device) -> int:
    if args.dtype not in DTYPES:
        parser.error(f"--dtype {args.dtype}: nnbasics' ops are compared in {', '.join(DTYPES)}")
    ops = [op for op in OPS if not args.op or op.name in args.op]
    if not ops:
        parser.error(f"--op {args.op}: unknown; choose from {[op.name for op in OPS]}")
    bad = 0
    for op in ops:
        worst, n, failures = 0.0, 0, []
        for sample in op.samples(device, DTYPES[args.dtype], True):
            for name, mine, ref in run_both(op, sample, args.impl):
                r = compare(f"{op.name}[{sample.desc}] {name}", mine, ref)
                n += 1
                worst = max(worst, r.max_abs_diff)
                if args.verbose:
                    print(r)
                if not r.close:
                    failures.append(r)
        grad_ok = _gradcheck(op, device, args.impl)
        status = "ok" if not failures and grad_ok else "MISMATCH"
        print(f"{op.name:<34} {n:>4} comparisons  max|diff| vs torch: {worst:.1e}  gradcheck: {'pass' if grad_ok else 'FAIL'}  {status}")
        for r in failures:
            print("   ", r)
        bad += status != "ok"
    print(f"{len(ops) - bad} of {len(ops)} ops agree with PyTorch ({args.dtype}, {device.type}, impl={args.impl})")
    return 1 if bad else 0


def _gradcheck(op, device, impl):
    fn = op.custom(impl)
    for sample in op.samples(device, torch.float64, True):
        inputs = [a for a in sample.args if isinstance(a, torch.Tensor) and a.requires_grad]
        if not sample.smooth or not inputs or inputs[0].numel() == 0:
            continue

        def call(*tensors, sample=sample):
            it = iter(tensors)
            args = [next(it) if isinstance(a, torch.Tensor) and a.requires_grad else a for a in sample.args]
            if op.random:
                torch.manual_seed(0)
            return fn(*args, **sample.kwargs)

        if not torch.autograd.gradcheck(call, inputs, raise_exception=False):
            return False
    return True
