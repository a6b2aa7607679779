"""One training step replayed as a CUDA graph, against the same step run eagerly.

    python -m benchmarks.graphs [--device cuda|cpu] [--impls builtin,custom,fused]
                                [--precisions float32,bfloat16] [--batch-sizes 256,1024] [--quick]
                                [--json FILE] [--markdown FILE]

A step of the MNIST MLP (``nnbasics.train.train_step``: forward, loss, backward, SGD step)
launches a few dozen small kernels; at these sizes a GPU finishes each faster than Python can
issue the next, so the step's time is mostly the CPU's. ``torch.cuda.graph`` records the
kernels of one step once and ``CUDAGraph.replay`` launches all of them in one call, which
removes that cost. This is PyTorch's own whole-network recipe: a few warm-up steps on a side
stream (they create the optimiser's momentum buffers and compile the fused path), then the
capture, all on one static batch. The replayed step uses the learning rate in force at capture
(SGD reads it as a Python number), so this measures samples/s, not training to an accuracy.

Every variant (impl x precision, eager and replayed) is timed in alternating rounds
(``benchmarks.common.time_alternately``); ``speedup`` is eager / replayed of the same impl and
precision. A step that cannot be captured (anything in it that makes the CPU wait for the
GPU, e.g. ``.item()`` in an argument check, or a CPU tensor made inside an op) is reported
with the error instead of a time. On the CPU only the eager rows are measured: CUDA graphs
need a CUDA device.
"""
import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):  # python benchmarks/graphs.py: import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from benchmarks.train import add_step_options, first_batch, step_options
from nnbasics import train as nntrain
from nnbasics.nn import MLP_IMPLS
from nnbasics.train import data as nndata
from nnbasics.train import files

WARMUP_STEPS = 3


def _step(config, device, impl):
    model, optimizer, _ = nntrain.build(dataclasses.replace(config, impl=impl), steps_per_epoch=1000, device=device)
    return model, optimizer, nntrain.make_loss(dataclasses.replace(config, impl=impl))


def replayed_step(model, optimizer, loss_fn, x, y, amp):
    """``CUDAGraph.replay`` of one captured ``train_step`` on the static batch (x, y)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_STEPS):
            nntrain.train_step(model, optimizer, x, y, loss_fn, amp=amp)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        nntrain.train_step(model, optimizer, x, y, loss_fn, amp=amp)
    graph.replay()
    torch.cuda.synchronize()
    return graph.replay


def measure(config, data, device, batch_size, impls, precisions, rounds, min_run_time) -> list:
    """Rows of (impl, precision, mode) at one batch size; 'graph' rows only on CUDA."""
    x, y = first_batch(data, batch_size)
    fns, errors = {}, {}
    for precision in precisions:
        amp = precision == "bfloat16"
        for impl in impls:
            model, optimizer, loss_fn = _step(config, device, impl)
            fns[(impl, precision, "eager")] = (
                lambda m=model, o=optimizer, f=loss_fn, a=amp: nntrain.train_step(m, o, x, y, f, amp=a))
            fns[(impl, precision, "eager")]()  # warm-up (the fused path compiles here)
            if device.type != "cuda":
                continue
            model, optimizer, loss_fn = _step(config, device, impl)
            try:
                fns[(impl, precision, "graph")] = replayed_step(model, optimizer, loss_fn, x, y, amp)
            except Exception as e:  # noqa: BLE001 (any capture failure is this benchmark's finding)
                errors[(impl, precision, "graph")] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                torch.cuda.synchronize()
    seconds = common.time_alternately(fns, device, rounds=rounds, min_run_time=min_run_time)
    rows = []
    for key in [*fns, *errors]:
        impl, precision, mode = key
        s = seconds.get(key)
        eager = seconds.get((impl, precision, "eager"))
        rows.append({"batch_size": batch_size, "impl": impl, "precision": precision, "mode": mode,
                     "step_ms": s * 1e3 if s else None, "samples_per_s": batch_size / s if s else None,
                     "speedup": eager / s if s and mode == "graph" else None, "error": errors.get(key)})
    return rows


def markdown(result) -> str:
    env = result["environment"]
    out = [f"`{env['command']}` on {env['device_name']} (torch {env['torch']}, {env['date']}, commit {env['git_commit']})",
           "", *[f"- note: {n}" for n in result["notes"]], "",
           "| batch | impl | precision | mode | step ms | samples/s | speedup (eager / graph) | error |",
           "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        def num(v, spec):
            return "-" if v is None else format(v, spec)
        out.append(f"| {r['batch_size']} | {r['impl']} | {r['precision']} | {r['mode']} | {num(r['step_ms'], '.3f')} | "
                   f"{num(r['samples_per_s'], '.0f')} | {num(r['speedup'], '.2f')} | {r['error'] or ''} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graphs", description=__doc__.split("\n\n")[1])
    add_step_options(parser, batch_sizes="256,1024", min_run_time=0.2, device_note=", where only the eager step is timed")
    parser.add_argument("--impls", default=",".join(MLP_IMPLS), help=f"comma-separated subset of {','.join(MLP_IMPLS)}")
    parser.add_argument("--quick", action="store_true", help="a smoke test: a 784-64-10 MLP, batch 128, one short round")
    args = parser.parse_args(argv)
    precisions, batch_sizes = step_options(parser, args)
    impls = args.impls.split(",")
    if set(impls) - set(MLP_IMPLS):
        parser.error(f"--impls: unknown {sorted(set(impls) - set(MLP_IMPLS))}; choose from {MLP_IMPLS}")
    device = torch.device(args.device)
    config = nntrain.Config(device=args.device, quiet=True)
    if args.quick:
        config = dataclasses.replace(config, hidden=[64])
        batch_sizes, args.rounds, args.min_run_time = [128], 1, 0.02
    data = nndata.load_splits(config.dataset, device=device, quiet=True)
    notes = [] if device.type == "cuda" else ["CUDA graphs need a CUDA device: only the eager step is timed here"]
    rows = []
    for batch_size in batch_sizes:
        rows += measure(config, data, device, batch_size, impls, precisions, args.rounds, args.min_run_time)
    result = {"environment": common.environment(device, torch.float32, "python -m benchmarks.graphs", argv),
              "notes": notes, "rows": rows}
    text = markdown(result)
    print(text, end="")
    if args.json:
        files.write_json(args.json, result, indent=1)
    if args.markdown:
        files.write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
