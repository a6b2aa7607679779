"""How long ``python -m nnbasics.check FILE.py:NAME`` takes for one small Function, every check included:
with Inductor's cache cold (a new ``TORCHINDUCTOR_CACHE_DIR``) and warm (the same folder, run again), and
with ``--compile-backend aot_eager`` (no code generation).

    python -m benchmarks.checker [--target docs/examples/softplus.py:Softplus] [--rounds 3] [--json F] [--markdown F]
    python -m benchmarks.checker --quick      (one aot_eager run: that it still works; its numbers mean nothing)

Each round runs the three variants one after the other in fresh processes (cold, then warm in the folder the
cold run filled, then aot_eager), so that load from other jobs falls on all of them alike. Reported per variant:
the process's wall clock (Python and torch start-up included), the checks' own seconds (the sum of the
report's ``seconds``) and the ``compile`` check's; and, warm, the second Function checked in one process (what each
further Function of a test suite costs, once start-up and Dynamo's first compile are paid); the median over the rounds, and the load average.
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

VARIANTS = ("cold", "warm", "aot_eager", "warm, a further Function in the same process")
FURTHER = VARIANTS[-1]


def further(target) -> dict:
    """In this process: check the target once (start-up, imports, Dynamo's first compile), then a fresh subclass of
    it (new code to compile, as the next Function of a test suite would be), and report that second check."""
    from nnbasics import check
    from nnbasics.testing import check_function

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


def run_once(target, variant, cache_dir) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    argv = [sys.executable, "-m", "nnbasics.check", target, "--json"]
    if variant == FURTHER:
        argv = [sys.executable, "-m", "benchmarks.checker", "--further", target]
    if variant == "aot_eager":
        argv += ["--compile-backend", "aot_eager"]
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"benchmarks.checker: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    if variant == FURTHER:
        return json.loads(done.stdout)
    report = json.loads(done.stdout)
    seconds = {r["name"]: r["seconds"] for r in report["results"]}
    return {"wall_s": wall, "checks_s": sum(seconds.values()), "compile_s": seconds.get("compile", 0.0)}


def measure(target, rounds, variants=VARIANTS) -> dict:
    found = {v: [] for v in variants}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="nnbasics-inductor-") as cache:
            for variant in variants:
                found[variant].append(run_once(target, variant, cache))
    return {v: {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"rounds": runs}
            for v, runs in found.items()}


def markdown(target, results, load) -> str:
    lines = [f"# `python -m nnbasics.check {target}`", "",
             f"Median of {len(next(iter(results.values()))['rounds'])} round(s); load average before / after: {load[0]} / {load[1]}.", "",
             "| variant | wall clock (process; the second check for the last row) | the checks | of which `compile` |", "|---|---|---|---|"]
    for v, r in results.items():
        lines.append(f"| {v} | {r['wall_s']:.1f} s | {r['checks_s']:.1f} s | {r['compile_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="docs/examples/softplus.py:Softplus")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="one aot_eager run: that it works (numbers mean nothing)")
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
    results = measure(args.target, 1 if args.quick else args.rounds, ("aot_eager",) if args.quick else VARIANTS)
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
