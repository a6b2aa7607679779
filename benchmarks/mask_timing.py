"""The timings behind "Selecting by a mask" in benchmarks/results/README.md: torch.where against
the fast path's bit selection (nnbasics/fused/masks.py: where_else_zero), the fast
dropout draw's comparison against its clamp form (nnbasics/fused/dropout.py: draw_keep), and ReLU's
compiled backward written with a comparison or with a bool tensor; on (256, 1024), each pair
alternated, 2 threads, freed memory kept as ``nnbasics.train`` keeps it. From the repository root:

    python -m benchmarks.mask_timing
"""
import os
import statistics

import torch
import torch.utils.benchmark as tb

from nnbasics.fused.masks import where_else_zero
from nnbasics.train import allocator


def alternate(fns, rounds=5):
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k] += tb.Timer("f()", globals={"f": f}).blocked_autorange(min_run_time=0.2).times
    return {k: statistics.median(v) * 1e6 for k, v in times.items()}


def show(title, us):
    print(title, {k: round(v, 1) for k, v in us.items()})


def selections(dtype, gen):
    name = str(dtype).removeprefix("torch.")
    v = torch.randn(256, 1024, generator=gen).to(dtype)
    keep = torch.rand(256, 1024, generator=gen) < 0.5
    show(f"select {name} (us):", alternate({"torch.where(keep, v, 0)": lambda: torch.where(keep, v, 0),
                                            "where_else_zero(keep, v)": lambda: where_else_zero(keep, v),
                                            "v * keep (reference: a multiply)": lambda: v * keep}))
    y = torch.randn(256, 1024, generator=gen).to(dtype).clamp_min(0)
    opts = {"dynamic": True, "fullgraph": True, "options": {"cpp.dynamic_threads": True}}
    compare = torch.compile(lambda v, y: torch.where(y <= 0, 0, v), **opts)
    as_bool = torch.compile(lambda v, y: torch.where(y.bool(), v, 0), **opts)
    compare(v, y), as_bool(v, y)
    show(f"compiled relu backward {name} (us):", alternate({"where(y <= 0, 0, v)": lambda: compare(v, y),
                                                            "where(y.bool(), v, 0)": lambda: as_bool(v, y)}))


def main():
    torch.set_num_threads(2)
    allocator.keep_freed_memory()  # as in training: the outputs' memory is reused, not page-faulted anew
    print("load", os.getloadavg()[0], "torch", torch.__version__)
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        selections(dtype, gen)
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, (65536,), dtype=torch.int64, generator=gen)
    r = bits.view(torch.int16).view(256, 1024)
    t = -19661  # the threshold of p = 0.2
    show("draw's comparison, int16 (us):", alternate({"r >= t": lambda: r >= t,
                                                      "r.clamp(t - 1, t).sub_(t - 1).bool()":
                                                          lambda: r.clamp(t - 1, t).sub_(t - 1).bool()}))
    print("load", os.getloadavg()[0])


if __name__ == "__main__":
    main()
