"""What wrapping an op costs per call: a built-in op, the same kernels in a torch.autograd.Function,
and the same kernels in a torch.library.custom_op, side by side.

    python -m benchmarks.overhead [--sizes 1,65536] [--threads 1] [--json F] [--markdown F] [--quick]

All three compute sigmoid with the same two ATen kernels (``torch.sigmoid`` forward,
``aten.sigmoid_backward`` backward), so any difference is the wrapper's: Python around forward
and backward for the Function; the dispatcher, the schema and the generated autograd wrapper for
the custom_op. At one element the kernels cost next to nothing and the time is the overhead;
at larger sizes it is amortized.

Modes (one timed call each): ``forward (no grad)``: the input does not require grad;
``forward``: it does, so the call also records the graph and saves the output; ``fwd+bwd``:
forward then ``torch.autograd.grad``. Timed with ``torch.utils.benchmark`` in alternating rounds
(``benchmarks.common.time_alternately``). ``--quick`` only checks that it runs: its numbers mean nothing.
"""
import argparse
import sys

import torch

from benchmarks import common
from nnbasics.train import files


class FunctionSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.sigmoid_backward(grad_y, y)


@torch.library.custom_op("nnbasics_bench::sigmoid", mutates_args=())
def custom_op_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


@custom_op_sigmoid.register_fake
def _(x):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output)


def _backward(ctx, grad_y):
    (y,) = ctx.saved_tensors
    return torch.ops.aten.sigmoid_backward(grad_y, y)


custom_op_sigmoid.register_autograd(_backward, setup_context=_setup_context)

VARIANTS = {"built-in": torch.sigmoid, "autograd.Function": FunctionSigmoid.apply, "custom_op": custom_op_sigmoid}
MODES = ("forward (no grad)", "forward", "fwd+bwd")


def _call(fn, mode, n):
    x = torch.randn(n, requires_grad=mode != "forward (no grad)")
    if mode != "fwd+bwd":
        return lambda: fn(x)
    g = torch.randn(n)
    return lambda: torch.autograd.grad(fn(x), x, g)


def measure(sizes, rounds, min_run_time):
    device = torch.device("cpu")
    rows = []
    for n in sizes:
        for mode in MODES:
            times = common.time_alternately({name: _call(fn, mode, n) for name, fn in VARIANTS.items()}, device,
                                            rounds=rounds, min_run_time=min_run_time)
            rows.append({"size": n, "mode": mode, **{f"{name} s": t for name, t in times.items()}})
    return rows


def markdown(header, rows) -> str:
    names = list(VARIANTS)
    lines = [f"# Per-call overhead: built-in op, autograd.Function, custom_op ({header['device_name']})", "",
             f"`{header['command']}`  ", (f"torch {header['torch']}, {header['threads']} thread(s), load average "
              f"{header['load_average']} before the run, {header['date']}, commit {header['git_commit']}"), "",
             "| size | mode | " + " | ".join(f"{n} (µs)" for n in names) + " | Function − built-in (µs) | "
             "custom_op − built-in (µs) |", "|" + "---|" * (len(names) + 4)]
    for r in rows:
        us = [r[f"{n} s"] * 1e6 for n in names]
        lines.append(f"| {r['size']} | {r['mode']} | " + " | ".join(f"{u:.1f}" for u in us)
                     + f" | {us[1] - us[0]:+.1f} | {us[2] - us[0]:+.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,65536", help="comma-separated numbers of elements (default: 1,65536)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default: 5)")
    p.add_argument("--min-run-time", type=float, default=0.2, help="seconds per timed block (default: 0.2)")
    p.add_argument("--json", metavar="FILE", help="write header and rows as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown table")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1: per-call overhead is "
                   "single-threaded, and on a busy machine extra threads only add waits at their barrier)")
    p.add_argument("--quick", action="store_true", help="one size, short blocks: checks that it runs (numbers mean nothing)")
    args = p.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes {args.sizes}: expected comma-separated integers, e.g. 1,65536")
    if args.threads < 1:
        p.error(f"--threads {args.threads}: must be at least 1")
    torch.set_num_threads(args.threads)
    if args.quick:
        sizes, args.rounds, args.min_run_time = sizes[:1], 1, 0.01
    header = common.environment(torch.device("cpu"), torch.float32, "python -m benchmarks.overhead", argv)
    rows = measure(sizes, args.rounds, args.min_run_time)
    text = markdown(header, rows)
    print(text)
    if args.json:
        files.write_json(args.json, {"header": header, "rows": rows}, indent=2)
    if args.markdown:
        files.write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
