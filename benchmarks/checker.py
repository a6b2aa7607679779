"""How long ``python -m nnbasics.check FILE.py:NAME`` takes for one small Function, every check included, against
a bare script that imports torch and runs ``gradcheck`` and ``gradgradcheck`` on the same Function: in the
command's own process (``--no-server``) with empty caches (a new ``TORCHINDUCTOR_CACHE_DIR``: cold) and filled ones
(the same folder, run again: warm); through the check server (``nnbasics.checkserver``), the first run (which
starts the server) and a later one (the server warm); with the default compile backend (``aot_trace``: Dynamo and
AOTAutograd, no code generation) and with ``inductor``.

    python -m benchmarks.checker [--target docs/examples/softplus.py:Softplus] [--rounds 3] [--inductor] [--json F] [--markdown F]
    python -m benchmarks.checker --quick      (the bare script, one run in-process, two through the server: that they
                                               work; numbers mean nothing)

Each round runs the variants one after the other in fresh processes (bare, the bare script followed by the
imports that checking torch.func and torch.compile needs (``torch._dynamo``, ``functorch.compile``: the floor of
any such run in one process), cold, warm in the folder the cold run filled, the server's first and a later run (a
socket directory of the round's own, the server stopped at the round's end), the client alone (``--stop-server``
where no server runs: Python's start and the client's imports), with ``--inductor`` Inductor cold and warm
in-process and warm through the server, then a further Function in one process), so that load from other jobs falls
on all of them alike. Reported per variant: the process's wall clock (Python and torch start-up included), the
checks' own seconds (the sum of the report's ``seconds``) and the ``compile`` check's; the ratio of each
round's wall clock to the same round's bare script (the median of those ratios); the median over the rounds,
and the load average.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks import common
from nnbasics.train import files

VARIANTS = ("bare gradcheck + gradgradcheck", "the bare script + importing Dynamo and AOTAutograd",
            "in its own process, cold", "in its own process, warm", "check server, first run (starts the server)",
            "check server, a later run", "the client alone (--stop-server, no server running)",
            "inductor, in its own process, cold", "inductor, in its own process, warm",
            "inductor, check server, a later run", "warm, a further Function in the same process")
BARE, FLOOR, WARM, SERVER_FIRST, SERVER_LATER, CLIENT, FURTHER = (VARIANTS[i] for i in (0, 1, 3, 4, 5, 6, -1))
SERVED = "check server"

# The bare script: what a user would run without the checker (the module loaded as the checker loads it).
_BARE = """import importlib.util, sys, time
start = time.perf_counter()
import torch
path, name = sys.argv[1].rsplit(":", 1)
spec = importlib.util.spec_from_file_location("target", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fn, inputs = getattr(module, name), module.sample_inputs()
torch.autograd.gradcheck(fn.apply, inputs)
torch.autograd.gradgradcheck(fn.apply, inputs)
print(time.perf_counter() - start)
"""
# The floor of any run that checks torch.func and torch.compile: the bare script, then the imports the first
# torch.func.grad (torch._dynamo) and the compile check (AOTAutograd's functorch.compile) cannot do without.
_FLOOR = _BARE.replace("print(", "import torch._dynamo, functorch.compile\nprint(")


def further(target) -> dict:
    """In this process: check the target once (start-up, imports, Dynamo's first compile), then a fresh subclass of
    it (new code to compile, as the next Function of a test suite would be), and report that second check."""
    from nnbasics.testing import check_function
    from nnbasics.testing import command as check

    fn, module = check.load(target)
    inputs = check.sample_inputs(module, target, None, None, "cpu")
    reference = getattr(module, "reference", None)
    check_function(fn, *inputs, reference=reference)
    twin = type(fn.__name__, (fn,), {})
    start = time.perf_counter()
    report = check_function(twin, *inputs, reference=reference)
    wall = time.perf_counter() - start
    seconds = {r.name: r.seconds for r in report.results.values()}
    return {"wall_s": wall, "checks_s": sum(seconds.values()), "compile_s": seconds.get("compile", 0.0)}


def run_once(target, variant, cache_dir, server_dir) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir, NNBASICS_CHECK_SERVER="1",
               NNBASICS_CHECK_SERVER_DIR=server_dir)
    argv = [sys.executable, "-m", "nnbasics.check", target, "--json"] + ([] if SERVED in variant else ["--no-server"])
    if variant == FURTHER:
        argv = [sys.executable, "-m", "benchmarks.checker", "--further", target]
    if variant in (BARE, FLOOR):
        argv = [sys.executable, "-c", _BARE if variant == BARE else _FLOOR, target]
    if variant == CLIENT:  # what the client costs on its own: Python's start, its imports, the socket directory
        argv = [sys.executable, "-m", "nnbasics.check", "--stop-server"]
        env["NNBASICS_CHECK_SERVER_DIR"] = os.path.join(server_dir, "none")
    if variant.startswith("inductor"):
        env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_dir, "inductor")
        argv += ["--compile-backend", "inductor"]
        if SERVED in variant:  # "a later run": the first starts this cache folder's server (another key)
            subprocess.run(argv, check=False, capture_output=True, env=env, timeout=900)
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1) or (SERVED in variant and done.stderr):  # stderr: the server did not serve
        raise SystemExit(f"benchmarks.checker: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    if variant == FURTHER:
        return json.loads(done.stdout)
    if variant in (BARE, FLOOR):
        return {"wall_s": wall, "checks_s": float(done.stdout.split()[-1]), "compile_s": 0.0}
    if variant == CLIENT:
        return {"wall_s": wall, "checks_s": 0.0, "compile_s": 0.0}
    report = json.loads(done.stdout)
    seconds = {r["name"]: r["seconds"] for r in report["results"]}
    return {"wall_s": wall, "checks_s": sum(seconds.values()), "compile_s": seconds.get("compile", 0.0)}


def measure(target, rounds, variants=VARIANTS) -> dict:
    found = {v: [] for v in variants}
    for _ in range(rounds):
        with (tempfile.TemporaryDirectory(prefix="nnbasics-inductor-") as cache,
              tempfile.TemporaryDirectory(prefix="nncs-", dir="/tmp") as servers):  # short: a socket path
            try:
                for variant in variants:
                    found[variant].append(run_once(target, variant, cache, servers))
            finally:
                subprocess.run([sys.executable, "-m", "nnbasics.check", "--stop-server"], check=False,
                               capture_output=True, env=dict(os.environ, NNBASICS_CHECK_SERVER_DIR=servers))
            bare = found[BARE][-1]["wall_s"] if BARE in found else None
            for variant in variants:
                if bare and variant not in (BARE, FURTHER):
                    found[variant][-1]["ratio"] = found[variant][-1]["wall_s"] / bare
    return {v: {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"rounds": runs}
            for v, runs in found.items()}


def markdown(target, results, load) -> str:
    lines = [f"# `python -m nnbasics.check {target}`", "",
             f"Median of {len(next(iter(results.values()))['rounds'])} round(s); load average before / after: {load[0]} / {load[1]}.", "",
             ("| variant | wall clock (process; the second check for the last row) | x the bare script | the checks "
              "(the bare script: its own seconds) | of which `compile` |"), "|---|---|---|---|---|"]
    for v, r in results.items():
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "1" if v == BARE else ""
        wall = f"{r['wall_s']:.1f}" if r["wall_s"] >= 1 else f"{r['wall_s']:.2f}"  # the client: hundredths
        lines.append(f"| {v} | {wall} s | {ratio} | {r['checks_s']:.1f} s | {r['compile_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="docs/examples/softplus.py:Softplus")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", metavar="FILE")
    parser.add_argument("--inductor", action="store_true", help="also the compile check with --compile-backend inductor, "
                        "caches cold and warm")
    parser.add_argument("--quick", action="store_true", help="the bare script, one run in-process and two "
                        "through the server: that they work (numbers mean nothing)")
    parser.add_argument("--further", metavar="TARGET", help=argparse.SUPPRESS)  # the in-process variant's worker
    args = parser.parse_args(argv)
    if args.further:
        print(json.dumps(further(args.further)))
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    header = common.environment(torch.device("cpu"), torch.float64, "python -m benchmarks.checker",
                                sys.argv[1:] if argv is None else argv)
    header["timer"] = "time.perf_counter around each subprocess; the checks' own Result.seconds"
    before = common.load_average()
    quick = (BARE, WARM, SERVER_FIRST, SERVER_LATER)
    results = measure(args.target, 1 if args.quick else args.rounds, quick if args.quick else
                      [v for v in VARIANTS if args.inductor or not v.startswith("inductor")])
    after = common.load_average()
    text = markdown(args.target, results, (before, after))
    print(text)
    if args.json:
        files.write_text(args.json, json.dumps({"header": header, "target": args.target, "load": [before, after],
                                                "results": results}, indent=2))
    if args.markdown:
        files.write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
