"""The timing behind "Dropout's draw" in benchmarks/results/README.md: torch's two float draws
(``bernoulli_``, and ``rand >= p``, the textbook's draw in nnbasics/ops/dropout.py) against the fast
path's 16-bit integer draw (nnbasics/fused/dropout.py), alternated, 1 thread. From the repository root:

    python -m benchmarks.dropout_draw_timing
"""
import os
import statistics

import torch
import torch.utils.benchmark as tb

from nnbasics.fused.dropout import draw_keep


def main():
    torch.set_num_threads(1)
    print("load", os.getloadavg()[0])
    for shape in ((256, 1024), (1024, 1024)):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape).to(dtype)
            fns = {"bernoulli_": lambda x=x: torch.empty_like(x).bernoulli_(0.8),
                   "rand_like >= p": lambda x=x: torch.rand_like(x) >= 0.2,
                   "draw_keep": lambda x=x: draw_keep(x, 0.2)}
            times = {k: [] for k in fns}
            for _ in range(5):
                for k, f in fns.items():
                    times[k] += tb.Timer("f()", globals={"f": f}).blocked_autorange(min_run_time=0.3).times
            ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(shape, str(dtype).removeprefix("torch."), {k: round(v, 3) for k, v in ms.items()},
                  "bernoulli_/draw_keep", round(ms["bernoulli_"] / ms["draw_keep"], 2))
    print("load", os.getloadavg()[0])


if __name__ == "__main__":
    main()
