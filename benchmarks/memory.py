"""Peak memory of softmax cross-entropy at a large class count: built-in vs hand-written.

    python -m benchmarks.memory [--rows 8192] [--classes 32768] [--device cpu|cuda] [--json FILE] [--markdown FILE]

The set-up is a language model's output layer: logits = h Wᵀ with h (rows, hidden) and W
(classes, hidden), then the loss, then backward to W. The logits dominate everything
(8192 × 32768 float32 = 1 GiB), so what counts is how many (rows, classes) tensors each
variant holds at once:

- builtin:  log_softmax's output is saved (1), backward makes the gradient of it (2) and
            then the gradient of the logits (3): three at the peak;
- custom:   the readable reference saves the logits (1) and its backward spells the formula
            out op by op, each op a temporary of that size;
- fused:    saves the logits (1) and writes the gradient in one compiled pass (2);
- fused_:   ``nnbasics.fused.inplace.cross_entropy_`` computes the gradient during forward and stores
            it over the logits (1), then scales it in place: one at the peak.

Each variant runs in a fresh process (so no allocator cache carries over), after a warm-up on a
small input (so compiling is not measured). Peak = the high-water mark during forward+backward
minus the memory held just before it: on CUDA ``torch.cuda.max_memory_allocated``, on the CPU
the process's resident-set high-water mark (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``).
"""
import argparse
import json
import re
import subprocess
import sys
import time

import torch

from benchmarks import common
from nnbasics.train import files

VARIANTS = ("builtin", "custom", "fused", "fused_")


def _loss_fn(variant):
    import torch.nn.functional as TF

    import nnbasics.functional as F
    from nnbasics.fused.inplace import cross_entropy_

    return {
        "builtin": TF.cross_entropy,
        "custom": lambda x, t: F.cross_entropy(x, t, impl="custom"),
        "fused": lambda x, t: F.cross_entropy(x, t, impl="fused"),
        "fused_": cross_entropy_,
    }[variant]


def _status_kib(field):
    return int(re.search(rf"{field}:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _step(loss_fn, h, w, t):
    loss = loss_fn(h @ w.t(), t)
    loss.backward()
    return loss


def child(variant, rows, classes, hidden, device, dtype):
    """Measure one variant in this (fresh) process; print one JSON line."""
    torch.manual_seed(0)
    loss_fn = _loss_fn(variant)
    h = torch.randn(rows, hidden, device=device, dtype=dtype)
    w = (torch.randn(classes, hidden, device=device, dtype=dtype) / hidden**0.5).requires_grad_()
    t = torch.randint(0, classes, (rows,), device=device)
    # Warm-up: the same step once, so that compiling (Inductor specialises on the class count and
    # on fused_'s chunking) and the allocator's first growth stay out of the measurement.
    _step(loss_fn, h, w, t)
    w.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to the current RSS
            f.write("5")
        before = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    loss = _step(loss_fn, h, w, t)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kib("VmHWM") * 1024
    seconds = time.perf_counter() - start
    print(json.dumps({"variant": variant, "peak_bytes": peak - before, "seconds": seconds, "loss": loss.item(),
                      "grad_norm": w.grad.norm().item()}))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8192, help="rows of logits, e.g. tokens (default: 8192)")
    parser.add_argument("--classes", type=int, default=32768, help="classes, e.g. vocabulary size (default: 32768)")
    parser.add_argument("--hidden", type=int, default=64, help="width of h, the layer before the logits (default: 64)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if common.cuda_usable() else "cpu",
                        help="device (default: cuda if usable, else cpu)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="dtype (default: float32)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine; use --device cpu")
    dtype = getattr(torch, args.dtype)
    if args.child:
        child(args.child, args.rows, args.classes, args.hidden, args.device, dtype)
        return 0
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)}; choose from {VARIANTS}")

    results = []
    for variant in variants:
        cmd = [sys.executable, "-m", "benchmarks.memory", "--child", variant, "--rows", str(args.rows),
               "--classes", str(args.classes), "--hidden", str(args.hidden), "--device", args.device, "--dtype", args.dtype]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO_ROOT, check=False)
        if out.returncode:
            sys.exit(f"{variant}: failed\n{out.stderr[-2000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = next((r for r in results if r["variant"] == "builtin"), results[0])
    logits_bytes = args.rows * args.classes * dtype.itemsize
    lines = [(f"cross_entropy {args.rows}x{args.classes} {args.dtype} on {args.device} "
              f"(one (rows, classes) tensor = {logits_bytes / 2**30:.2f} GiB)"),
             f"{'variant':<10}{'peak GiB':>10}{'(rows,classes) tensors':>24}{'ratio vs builtin':>18}{'fwd+bwd s':>11}"]
    for r in results:
        # None where the built-in's peak is 0: on the CPU a step small enough to fit in memory the
        # process already holds does not raise its resident high-water mark
        r["ratio"] = r["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] else None
        r["logits_tensors"] = r["peak_bytes"] / logits_bytes
        lines.append(f"{r['variant']:<10}{r['peak_bytes'] / 2**30:>10.2f}{r['logits_tensors']:>24.2f}"
                     f"{_ratio_text(r['ratio']):>18}{r['seconds']:>11.2f}")
    print("\n".join(lines))
    meta = {**common.environment(torch.device(args.device), dtype, "python -m benchmarks.memory",
                                 sys.argv[1:] if argv is None else argv),
            "rows": args.rows, "classes": args.classes, "hidden": args.hidden}
    if args.json:
        files.write_json(args.json, {"meta": meta, "results": results}, indent=1)
    if args.markdown:
        with files.atomic_open(args.markdown, "w") as f:
            f.write(f"`{meta['command']}` — {meta['device_name']}, torch {meta['torch']}, {meta['threads']} threads, {meta['date']}\n\n")
            f.write("| variant | peak GiB | (rows, classes) tensors at peak | ratio vs builtin | fwd+bwd s |\n|---|---|---|---|---|\n")
            for r in results:
                f.write(f"| {r['variant']} | {r['peak_bytes'] / 2**30:.2f} | {r['logits_tensors']:.2f} | "
                        f"{_ratio_text(r['ratio'])} | {r['seconds']:.2f} |\n")
    return 0


def _ratio_text(ratio):
    return "-" if ratio is None else f"{ratio:.2f}"


if __name__ == "__main__":
    sys.exit(main())
