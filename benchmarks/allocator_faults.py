"""The measurement behind "Page faults in the training step" in this folder's README: the default
MLP's training step (custom and builtin, float32 and bfloat16 autocast, batch 256, 2 threads) in
fresh processes, with glibc's malloc defaults and with ``nnbasics.train.allocator.keep_freed_memory``;
minor page faults, system time and wall time per step after 20 warm-up steps. Processes of the
two settings alternate, three of each; medians (benchmarks/results/README.md, "Page faults in the
training step"). From the repository root:

    python -m benchmarks.allocator_faults
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from nnbasics import train as nntrain
from nnbasics.train import allocator, data as nndata
from benchmarks.train import first_batch
if sys.argv[1] == "kept":
    allocator.keep_freed_memory()
torch.set_num_threads(2)
impl, amp = sys.argv[2], sys.argv[3] == "bfloat16"
config = nntrain.Config(device="cpu", quiet=True, impl=impl)
data = nndata.load_splits(config.dataset, device=torch.device("cpu"), quiet=True)
x, y = first_batch(data, 256)
model = nntrain.build(config, steps_per_epoch=1, device=torch.device("cpu"))[0]
opt, loss_fn = nntrain.make_optimizer(config, model), nntrain.make_loss(config)
for _ in range(20):
    nntrain.train_step(model, opt, x, y, loss_fn, amp=amp)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(100):
    nntrain.train_step(model, opt, x, y, loss_fn, amp=amp)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"faults": (r1.ru_minflt - r0.ru_minflt) / 100, "sys_ms": (r1.ru_stime - r0.ru_stime) * 10,
                  "step_ms": (t1 - t0) * 10}))
"""

print("load", os.getloadavg()[0])
for impl in ("custom", "builtin"):
    for precision in ("float32", "bfloat16"):
        runs = {"defaults": [], "kept": []}
        for _ in range(3):
            for setting, results in runs.items():
                out = subprocess.run([sys.executable, "-c", CHILD, setting, impl, precision], check=True,
                                     capture_output=True, text=True).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
        row = {s: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for s, rs in runs.items()}
        print(impl, precision, row)
print("load", os.getloadavg()[0])
