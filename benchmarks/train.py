"""Whole training, hand-written vs built-in: step time, memory saved for backward, time to 98% and 98.5%.

    python -m benchmarks.train [--device cpu|cuda] [--impls custom,fused,builtin] [--precisions float32,bfloat16]
                               [--batch-sizes 128,256,1024] [--preset NAME] [--targets 0.98,0.985]
                               [--no-compile] [--no-time-to-accuracy] [--threads N] [--quick] [--json F] [--markdown F]

Three measurements of the MNIST MLP that ``python -m nnbasics.train`` trains, built by the
training script's own ``build`` / ``train_step`` with its default config (784-1024-1024-10,
ReLU, dropout 0.2, SGD with Nesterov momentum) or a ``--preset``, changing only ``impl`` and
the precision (``float32``, or ``bfloat16``: float32 parameters under bfloat16 autocast, as
``--amp on`` trains; ``-bf16`` rows):

1. **Step time** (forward, backward, optimiser step) at each batch size, for every impl and
   precision eager and, unless ``--no-compile``, under ``torch.compile`` (``-compiled`` rows; the
   time of the first, compiling call is reported separately as ``compile_s``). Each variant is
   timed alternately with the built-in eager step of the same precision
   (``benchmarks.common.time_alternately``), in rounds of its own, as a program runs one
   implementation (``benchmarks/results/README.md``, "One impl at a time"), and compared with the
   built-in's time in those rounds: ``ratio`` < 1 is faster.
2. **Bytes saved for backward** by one float32 forward at batch 128, excluding the parameters
   and the batch (which exist anyway): ``total`` sums every saved tensor as autograd's
   hooks see it (a tensor saved by two ops counts twice, as each op asks for it), ``unique``
   counts each storage once (what is really kept alive).
3. **Time to each target test accuracy** (the records): the recipe, trained epoch by epoch,
   all variants in this one process; the training seconds until the end of the first epoch
   whose test accuracy reaches the target (evaluation is not counted; the data is on the
   device from the start); for compiled variants, compile time is reported separately.
"""
import argparse
import dataclasses
import itertools
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # python benchmarks/train.py: import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from nnbasics import train as nntrain
from nnbasics.nn import MLP_IMPLS
from nnbasics.train import allocator, files
from nnbasics.train import data as nndata

PRECISIONS = ("float32", "bfloat16")
BUILTINS = ("builtin", "builtin-tuned")
IMPLS = (*MLP_IMPLS, "builtin-tuned")
"""``builtin``: torch.nn with torch.optim's defaults (what a user writes); ``builtin-tuned``: torch.nn
with nnbasics' optimizer choice (``nnbasics.train.make_optimizer``), so op-level ratios compare ops only."""


def first_batch(data, batch_size):
    """The first normalised (x, y) batch of the training split, as training would see it."""
    return next(nndata.batches(data.train, batch_size, mean=data.mean, std=data.std))


def _variants(impls, precisions, compile_too):
    """[(impl, compiled, amp)]: every impl eager, then compiled (but fused: compiled fused = compiled custom)."""
    out = []
    for amp in (p == "bfloat16" for p in precisions):
        out += [(impl, False, amp) for impl in impls]
        if compile_too:
            out += [(impl, True, amp) for impl in impls if impl != "fused"]
    return out


def _name(impl, compiled, amp=False):
    return impl + ("-compiled" if compiled else "") + ("-bf16" if amp else "")


def _config(config, impl):
    """The training config of a benchmark impl (``builtin-tuned`` trains impl="builtin")."""
    return dataclasses.replace(config, impl="builtin" if impl in BUILTINS else impl)


def _setup(config, device, compiled, impl):
    config = _config(config, impl)
    model, optimizer, _ = nntrain.build(config, steps_per_epoch=1000, device=device,
                                        torch_defaults=impl == "builtin")
    loss_fn = nntrain.make_loss(config)
    if compiled:
        model = torch.compile(model)
        loss_fn = torch.compile(loss_fn)
    return model, optimizer, loss_fn


def matmul_floor(sizes, batch_size, device, amp):
    """The step's matrix products alone, as a callable: for each layer (in, out) the forward
    X Wᵀ, dL/dW = Gᵀ X and (but for the first layer, whose input needs no gradient) dL/dX = G W,
    with the step's shapes, layouts (W stored (out, in), the batch row by row) and dtype
    (bfloat16 under ``amp``, as autocast runs them). Nothing else: no bias, activation,
    dropout, loss, cast or optimiser. The step can only be slower; step / floor says by how much."""
    dtype = torch.bfloat16 if amp else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    layers = [(torch.randn(n_out, n_in, generator=gen, device=device).to(dtype),
               torch.randn(batch_size, n_in, generator=gen, device=device).to(dtype),
               torch.randn(batch_size, n_out, generator=gen, device=device).to(dtype))
              for n_in, n_out in itertools.pairwise(sizes)]

    def run():
        for i, (w, x, g) in enumerate(layers):
            x @ w.t()
            g.t() @ x
            if i:
                g @ w
    return run


def parameter_floor(config, sizes, device, amp):
    """What the step must do with its float32 parameters besides multiplying, as a callable: the
    optimiser step (``nntrain.make_optimizer``'s, over parameters and gradients of the step's shapes)
    and, under ``amp``, the two casts autocast makes of each weight: the weight to bfloat16 for the
    forward, its bfloat16 gradient to float32 for the optimiser. No step with float32 parameters
    avoids them; ``floor`` + this is the least such a step can take."""
    gen = torch.Generator(device=device).manual_seed(0)
    params = torch.nn.ParameterList()
    for n_in, n_out in itertools.pairwise(sizes):
        params.append(torch.randn(n_out, n_in, generator=gen, device=device))
        params.append(torch.randn(n_out, generator=gen, device=device))
    grads = [torch.randn(p.shape, generator=gen, device=device).to(torch.bfloat16 if amp else torch.float32)
             for p in params]
    optimizer = nntrain.make_optimizer(config, params)

    def run():
        for p, g in zip(params, grads):
            if amp:
                p.detach().to(torch.bfloat16)
            p.grad = g.to(torch.float32) if amp else g
        optimizer.step()
    return run


def step_times(config, data, device, batch_size, variants, rounds, min_run_time):
    """Median seconds per training step of each variant and of each precision's ``floor``
    (``matmul_floor``) and ``params`` (``parameter_floor``); for each, the built-in eager step's
    time in the same rounds; and the compile time of compiled ones.

    Each callable alternates with the built-in eager step of its precision in rounds of its own;
    the built-in's own time is the median of those. Without the built-in among the variants,
    all alternate in one set of rounds, against nothing (``None``)."""
    x, y = first_batch(data, batch_size)
    fns, amp_of, compile_s = {}, {}, {}
    sizes = [x.shape[1], *config.hidden, nndata.NUM_CLASSES]
    for amp in sorted({amp for _, _, amp in variants}):
        for kind, floor in (("floor", matmul_floor(sizes, batch_size, device, amp)),
                            ("params", parameter_floor(config, sizes, device, amp))):
            fns[_name(kind, False, amp)], amp_of[_name(kind, False, amp)] = floor, amp
    for impl, compiled, amp in variants:
        name = _name(impl, compiled, amp)
        model, optimizer, loss_fn = _setup(config, device, compiled, impl)
        fns[name] = lambda m=model, o=optimizer, f=loss_fn, a=amp: nntrain.train_step(m, o, x, y, f, amp=a)
        amp_of[name] = amp
        start = time.perf_counter()
        fns[name]()  # the first call compiles (and warms up the allocator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if compiled:
            compile_s[name] = time.perf_counter() - start
    base = {name: _name("builtin", False, amp) for name, amp in amp_of.items()}
    if not all(b in fns for b in base.values()):
        return common.time_alternately(fns, device, rounds=rounds, min_run_time=min_run_time), {}, compile_s
    times, base_times, builtin_runs = {}, {}, {b: [] for b in set(base.values())}
    for name, fn in fns.items():
        if name in builtin_runs:
            continue
        pair = common.time_alternately({base[name]: fns[base[name]], name: fn}, device, rounds=rounds,
                                       min_run_time=min_run_time)
        times[name], base_times[name] = pair[name], pair[base[name]]
        builtin_runs[base[name]].append(pair[base[name]])
    for b, runs in builtin_runs.items():
        times[b] = base_times[b] = statistics.median(runs)
    return times, base_times, compile_s


def saved_bytes(config, data, device, impls, batch_size=128):
    """{impl: (total, unique)} bytes saved for backward by one forward, parameters and batch excluded."""
    x, y = first_batch(data, batch_size)
    out = {}
    for impl in impls:
        model, _, loss_fn = _setup(config, device, compiled=False, impl=impl)
        saved = common.saved_tensor_bytes(lambda f=loss_fn, m=model: f(m(x), y), inputs=[x, y, *model.parameters()])
        out[impl] = (saved.new_total, saved.new)
    return out


def time_to_accuracy(config, data, device, impl, compiled, amp, targets, max_epochs):
    """Train the recipe until the test accuracy reaches every one of ``targets`` (or for ``max_epochs``);
    the training seconds (and epochs) until each was first reached, None where it was not."""
    model, optimizer, scheduler = nntrain.build(_config(config, impl), len(data.train) // config.batch_size, device,
                                                torch_defaults=impl == "builtin")
    loss_fn = nntrain.make_loss(_config(config, impl))
    compile_s = 0.0
    if compiled:  # compile outside the clock, on one batch, then restore the untouched start
        state = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())
        train_model, train_loss = torch.compile(model), torch.compile(loss_fn)
        x, y = first_batch(data, config.batch_size)
        start = time.perf_counter()
        nntrain.train_step(train_model, optimizer, x, y, train_loss, amp=amp)
        compile_s = time.perf_counter() - start
        model.load_state_dict(state[0])
        optimizer.load_state_dict(state[1])
    else:
        train_model, train_loss = model, loss_fn
    generator = torch.Generator(device=device).manual_seed(config.seed)
    seconds, history, reached = 0.0, [], {}
    for epoch in range(1, max_epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        nntrain.train_epoch(train_model, optimizer, scheduler, train_loss, data.train, mean=data.mean, std=data.std,
                            batch_size=config.batch_size, generator=generator, shift=config.shift, amp=amp)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        _, acc = nntrain.app.evaluate(model, data.test, loss_fn, mean=data.mean, std=data.std, amp=amp)
        history.append({"epoch": epoch, "train_s": round(seconds, 3), "test_acc": acc})
        for target in targets:
            if acc >= target and target not in reached:
                reached[target] = {"train_s": seconds, "epochs": epoch}
        if len(reached) == len(targets):
            break
    return {"variant": _name(impl, compiled, amp), "impl": impl, "compiled": compiled,
            "precision": "bfloat16" if amp else "float32", "epochs": len(history), "train_s": seconds,
            "compile_s": compile_s, "test_acc": history[-1]["test_acc"], "best_acc": max(h["test_acc"] for h in history),
            "targets": [{"target": t, **reached.get(t, {"train_s": None, "epochs": None})} for t in targets],
            "history": history}


def add_step_options(parser, *, batch_sizes: str, min_run_time: float, device_note: str = ""):
    """The options of the step benchmarks (this one, step_parts, graphs), parsed by ``step_options``:
    --device, --precisions, --batch-sizes, --rounds, --min-run-time, --threads, --malloc-defaults, --json, --markdown."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if common.cuda_usable() else "cpu",
                        help=f"device (default: cuda if usable, else cpu{device_note})")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help=f"comma-separated subset of {','.join(PRECISIONS)} (bfloat16: float32 weights under "
                             f"bfloat16 autocast)")
    parser.add_argument("--batch-sizes", default=batch_sizes, help=f"batch sizes of the step timing (default: {batch_sizes})")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (default: 5)")
    parser.add_argument("--min-run-time", type=float, default=min_run_time,
                        help=f"seconds per timed block (default: {min_run_time})")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch.get_num_threads(); on a machine shared with "
                             "other jobs, 1 avoids threads waiting for each other's time slices)")
    parser.add_argument("--malloc-defaults", action="store_true",
                        help="leave glibc's malloc settings as they are (default: keep freed memory for reuse, "
                             "as nnbasics.train does, for every variant: nnbasics/train/allocator.py)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write a Markdown table")


def step_options(parser, args):
    """(precisions, batch sizes) from ``--precisions`` and ``--batch-sizes``, after checking
    ``--device`` and applying ``--threads``; a bad value ends the program with a one-line usage error."""
    if args.device == "cuda" and not common.cuda_usable():
        parser.error("--device cuda: CUDA is not available on this machine; use --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads {args.threads}: give a positive number of CPU threads, e.g. 1")
        torch.set_num_threads(args.threads)
    if not args.malloc_defaults:
        allocator.keep_freed_memory()
    precisions = args.precisions.split(",")
    if set(precisions) - set(PRECISIONS):
        parser.error(f"--precisions: unknown {sorted(set(precisions) - set(PRECISIONS))}; choose from {PRECISIONS}")
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--batch-sizes {args.batch_sizes!r}: give comma-separated integers, e.g. 128,1024")
    return precisions, batch_sizes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n\n")[0])
    add_step_options(parser, batch_sizes="128,256,1024", min_run_time=1.0)
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help=f"comma-separated subset of {','.join(IMPLS)} (builtin: torch.optim's defaults; "
                             f"builtin-tuned: nnbasics' optimizer choice)")
    parser.add_argument("--preset", choices=tuple(nntrain.PRESETS), default=None,
                        help="train this preset's recipe (default: the default one)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--no-time-to-accuracy", action="store_true", help="skip the time-to-accuracy runs")
    parser.add_argument("--targets", default="0.98,0.985", help="test accuracies to reach (default: 0.98,0.985)")
    parser.add_argument("--max-epochs", type=int, default=None, help="give up after this many epochs (default: the recipe's)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: a 784-64-10 MLP, batch 128, one short round, time-to-accuracy on 5000 samples")
    args = parser.parse_args(argv)
    precisions, batch_sizes = step_options(parser, args)
    impls = args.impls.split(",")
    if set(impls) - set(IMPLS):
        parser.error(f"--impls: unknown {sorted(set(impls) - set(IMPLS))}; choose from {IMPLS}")
    try:
        targets = sorted(float(t) for t in args.targets.split(","))
    except ValueError:
        parser.error(f"--targets {args.targets!r}: give comma-separated accuracies, e.g. 0.98,0.985")
    device = torch.device(args.device)
    config = nntrain.Config(device=args.device, quiet=True, **nntrain.PRESETS.get(args.preset, {}))
    if args.quick:
        config = dataclasses.replace(config, hidden=[64], epochs=1)
        batch_sizes, args.rounds, args.min_run_time = [128], 1, 0.05
    data = nndata.load_splits(config.dataset, device=device, quiet=True)
    if args.quick:
        data.train = nndata.Split(data.train.images[:5000], data.train.labels[:5000])
    env = common.environment(device, torch.float32, "python -m benchmarks.train", sys.argv[1:] if argv is None else argv)
    warning = common.busy_warning(torch.get_num_threads())
    if warning:
        print("warning:", warning, file=sys.stderr)

    variants = _variants(impls, precisions, not args.no_compile)
    steps = []
    for batch_size in batch_sizes:
        times, base_times, compile_s = step_times(config, data, device, batch_size, variants, args.rounds,
                                                  args.min_run_time)
        for impl, compiled, amp in variants:
            name = _name(impl, compiled, amp)
            base = base_times.get(name)
            seconds, floor, params = times[name], times[_name("floor", False, amp)], times[_name("params", False, amp)]
            steps.append({"batch_size": batch_size, "variant": name, "precision": "bfloat16" if amp else "float32",
                          "step_ms": seconds * 1e3, "floor_ms": floor * 1e3, "params_ms": params * 1e3,
                          "samples_per_s": batch_size / seconds, "ratio": seconds / base if base else None,
                          "vs_floor": seconds / floor, "vs_floor_params": seconds / (floor + params),
                          "compile_s": compile_s.get(name)})
    saved = saved_bytes(config, data, device, impls)
    saved_rows = [{"impl": impl, "total_bytes": t, "unique_bytes": u,
                   "total_ratio": t / saved["builtin"][0] if "builtin" in saved else None,
                   "unique_ratio": u / saved["builtin"][1] if "builtin" in saved else None} for impl, (t, u) in saved.items()]
    accuracy = []
    if not args.no_time_to_accuracy:
        for impl, compiled, amp in variants:
            accuracy.append(time_to_accuracy(config, data, device, impl, compiled, amp, targets,
                                             args.max_epochs or config.epochs))

    lines = [f"# {env['command']}  ({env['device_name']}, torch {env['torch']}, {env['threads']} threads, {env['date']})",
             f"load average {env['load_average']}", "",
             (f"{'batch':>6} {'variant':<24} {'step ms':>9} {'floor ms':>9} {'vs floor':>9} {'params ms':>10} "
              f"{'vs both':>8} {'samples/s':>11} {'vs builtin':>11} {'compile s':>10}")]
    for r in steps:
        lines.append(f"{r['batch_size']:>6} {r['variant']:<24} {r['step_ms']:>9.2f} {r['floor_ms']:>9.2f} "
                     f"{r['vs_floor']:>9.2f} {r['params_ms']:>10.2f} {r['vs_floor_params']:>8.2f} {r['samples_per_s']:>11.0f} "
                     f"{_fmt(r['ratio'], '.2f'):>11} {_fmt(r['compile_s'], '.1f'):>10}")
    lines += ["", f"{'impl':<10} {'saved total KiB':>16} {'vs builtin':>11} {'saved unique KiB':>17} {'vs builtin':>11}"]
    for r in saved_rows:
        lines.append(f"{r['impl']:<10} {r['total_bytes'] / 1024:>16.0f} {_fmt(r['total_ratio'], '.2f'):>11} "
                     f"{r['unique_bytes'] / 1024:>17.0f} {_fmt(r['unique_ratio'], '.2f'):>11}")
    if accuracy:
        lines += ["", f"{'variant':<22}" + "".join(f"{f'to {t:.1%}: s':>14} {'epochs':>7}" for t in targets)
                  + f" {'compile s':>10} {'best acc':>9}"]
        for r in accuracy:
            lines.append(f"{r['variant']:<22}" + "".join(f"{_fmt(t['train_s'], '.1f'):>14} {_fmt(t['epochs'], 'd'):>7}"
                                                        for t in r["targets"])
                         + f" {r['compile_s']:>10.1f} {r['best_acc']:>9.4f}")
    print("\n".join(lines))
    result = {"environment": env, "config": dataclasses.asdict(config), "preset": args.preset, "targets": targets,
              "steps": steps, "saved": saved_rows, "time_to_accuracy": accuracy}
    if args.json:
        files.write_json(args.json, result, indent=1)
    if args.markdown:
        files.write_text(args.markdown, markdown(result))
    return 0


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown(result):
    env = result["environment"]
    out = [(f"`{env['command']}` on {env['device_name']} (torch {env['torch']}, {env['threads']} threads, "
            f"load average {env['load_average']}, {env['date']}, commit {env['git_commit']})"), "",
           ("Each row is timed alternately with the built-in eager step of its precision, in rounds of its own; "
            "`step / builtin eager` is against the built-in's time in those rounds. "
            "`floor`: the step's matrix products alone (same shapes, dtype and layouts, forward and backward); "
            "`params`: the optimiser step and, under bfloat16 autocast, the weight and gradient casts, alone "
            "(`parameter_floor`); `builtin`: torch.nn with torch.optim's defaults; `builtin-tuned`: torch.nn with "
            "nnbasics' optimizer choice."), "",
           ("| batch | variant | step ms | floor ms | step / floor | params ms | step / (floor + params) | samples/s "
            "| step / builtin eager | compile s |"),
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["steps"]:
        out.append(f"| {r['batch_size']} | {r['variant']} | {r['step_ms']:.2f} | {r['floor_ms']:.2f} | "
                   f"{r['vs_floor']:.2f} | {r['params_ms']:.2f} | {r['vs_floor_params']:.2f} | {r['samples_per_s']:.0f} | "
                   f"{_fmt(r['ratio'], '.2f')} | {_fmt(r['compile_s'], '.1f')} |")
    out += ["", "| impl | saved for backward, total KiB | vs built-in | unique storages KiB | vs built-in |", "|---|---|---|---|---|"]
    for r in result["saved"]:
        out.append(f"| {r['impl']} | {r['total_bytes'] / 1024:.0f} | {_fmt(r['total_ratio'], '.2f')} | "
                   f"{r['unique_bytes'] / 1024:.0f} | {_fmt(r['unique_ratio'], '.2f')} |")
    if result["time_to_accuracy"]:
        recipe = f"--preset {result['preset']}" if result.get("preset") else "the default recipe"
        out += ["", (f"Time to test accuracy, {recipe} (training seconds until the end of the first epoch that reaches "
                 f"it; '-': not reached in {result['config']['epochs']} epochs):"), "",
                "| variant | precision | " + " | ".join(f"to {t:.1%}: s (epochs)" for t in result["targets"])
                + " | compile s | best test acc |", "|---|---|" + "---|" * len(result["targets"]) + "---|---|"]
        for r in result["time_to_accuracy"]:
            cells = [f"{t['train_s']:.1f} ({t['epochs']})" if t["epochs"] else "-" for t in r["targets"]]
            out.append(f"| {r['variant']} | {r['precision']} | " + " | ".join(cells)
                       + f" | {r['compile_s']:.1f} | {r['best_acc']:.4f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
