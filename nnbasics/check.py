"""Check every hand-written op against PyTorch yourself, and see the differences.

    python -m nnbasics.check [--dtype float64|float32|bfloat16] [--device cpu|cuda] [--impl custom|fused] [--op NAME]

For each op of the registry and each of its sample inputs, runs the hand-written op and its
``torch.nn.functional`` twin on the same inputs and upstream gradient and prints, for the output
and every input gradient, whether they are exactly equal, equal within tolerance, and the largest
absolute difference; then runs ``torch.autograd.gradcheck`` (first derivatives against finite
differences, float64). Exits non-zero if anything disagrees.
"""
import argparse
import sys

import torch

from .testing import OPS, compare, run_both

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nnbasics.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=DTYPES, default="float64", help="dtype of the parity comparison (default: float64)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--impl", choices=["custom", "fused"], default="custom", help="which hand-written implementation (default: custom)")
    parser.add_argument("--op", action="append", help="only this op (repeatable); default: all")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every comparison, not one line per op")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    ops = [op for op in OPS if not args.op or op.name in args.op]
    if not ops:
        parser.error(f"--op {args.op}: unknown; choose from {[op.name for op in OPS]}")

    bad = 0
    for op in ops:
        worst, n, failures = 0.0, 0, []
        for sample in op.samples(args.device, DTYPES[args.dtype], True):
            for name, mine, ref in run_both(op, sample, args.impl):
                r = compare(f"{op.name}[{sample.desc}] {name}", mine, ref)
                n += 1
                worst = max(worst, r.max_abs_diff)
                if args.verbose:
                    print(r)
                if not r.close:
                    failures.append(r)
        grad_ok = _gradcheck(op, args.device, args.impl)
        status = "ok" if not failures and grad_ok else "MISMATCH"
        print(f"{op.name:<34} {n:>4} comparisons  max|diff| vs torch: {worst:.1e}  gradcheck: {'pass' if grad_ok else 'FAIL'}  {status}")
        for r in failures:
            print("   ", r)
        bad += status != "ok"
    print(f"{len(ops) - bad} of {len(ops)} ops agree with PyTorch ({args.dtype}, {args.device}, impl={args.impl})")
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


if __name__ == "__main__":
    sys.exit(main())
