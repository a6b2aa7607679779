"""Where the hand-written training step's extra time goes, part by part.

    python -m benchmarks.step_parts [--batch-sizes 128,1024] [--precisions float32,bfloat16]
                                    [--rounds 5] [--json F] [--markdown F] [--quick]

The step is ``nnbasics.train.train_step`` on the default MLP (784-1024-1024-10, relu, dropout,
label-smoothed cross-entropy, SGD), as ``benchmarks.train`` times it. Here it is timed for
variants that differ in one part only, alternately in one process
(``benchmarks.common.time_alternately``):

- ``builtin``: torch.nn throughout; ``custom``: nnbasics' hand-written ops throughout (both with
  nnbasics' optimizer choice, ``nnbasics.train.make_optimizer``: ``builtin-tuned`` in ``benchmarks.train``);
- ``custom, built-in <part>``: the custom network with one part taken back from the built-in
  network (same weights): the three ``linear`` layers, the activation+dropout pairs, or the
  cross-entropy.

``custom`` minus ``custom, built-in <part>`` is what that part costs over the built-in inside
the step itself, memory traffic and allocations included, which timing an op alone misses.

A last pair times the same step on a 784-8-8-10 MLP at batch 4, where the arithmetic costs
next to nothing: its difference is the fixed, per-call part (Python in ``autograd.Function``,
the argument checks, one small tensor operation per term of a formula), paid at every batch size.

``floor`` (``benchmarks.train.matmul_floor``: the step's matrix products alone) is timed with
them. What the rest of the step is: ``torch.profiler`` over ten custom and ten built-in steps,
each operator's own time sorted into ``matrix products``, ``random draw``, ``optimizer``,
``casts and copies`` and ``other`` (elementwise, reductions, autograd, Python), per step.

``--quick`` only checks that it runs: its numbers mean nothing.
"""
import argparse
import copy
import dataclasses
import sys

import torch

from benchmarks import common
from benchmarks.train import add_step_options, first_batch, matmul_floor, step_options
from nnbasics import train as nntrain
from nnbasics.train import data as nndata
from nnbasics.train import files

PARTS = {
    "linear": lambda layer: isinstance(layer, torch.nn.Linear),
    "activation+dropout": lambda layer: not isinstance(layer, torch.nn.Linear),
}
TINY = {"hidden": [8, 8], "batch_size": 4}


def _variants(config, device):
    """{name: (model, optimizer, loss_fn)}: built-in, custom, and custom with each part built-in."""
    builtin = nntrain.build(dataclasses.replace(config, impl="builtin"), steps_per_epoch=1, device=device)[0]
    custom = nntrain.build(dataclasses.replace(config, impl="custom"), steps_per_epoch=1, device=device)[0]
    custom_loss = nntrain.make_loss(dataclasses.replace(config, impl="custom"))
    builtin_loss = nntrain.make_loss(dataclasses.replace(config, impl="builtin"))
    models = {"builtin": (builtin, builtin_loss), "custom": (custom, custom_loss)}
    for part, chosen in PARTS.items():
        # the layers keep the built-in's names; the custom MLP's ActivationDropout stands at the
        # activation's name and covers the Dropout's too
        hybrid = copy.deepcopy(custom)
        mine = dict(hybrid.named_children())
        hybrid._modules.clear()
        for name, layer in builtin.named_children():
            if chosen(layer):
                hybrid._modules[name] = copy.deepcopy(layer)
            elif name in mine:
                hybrid._modules[name] = mine[name]
        models[f"custom, built-in {part}"] = (hybrid, custom_loss)
    models["custom, built-in cross-entropy"] = (copy.deepcopy(custom), builtin_loss)
    return {name: (model, nntrain.make_optimizer(config, model), loss) for name, (model, loss) in models.items()}


CATEGORIES = {  # operator name (self time) -> what it is part of
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"),
    "random draw": ("aten::bernoulli_", "aten::random_", "aten::uniform_", "aten::randint", "aten::rand_like"),
    "optimizer": ("aten::_fused_sgd_", "aten::_foreach_add_", "aten::_foreach_mul_", "aten::_foreach_add",
                  "aten::_foreach_lerp_"),
    "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone"),
}


def _step_fns(variants, x, y, amp):
    return {name: (lambda m=m, o=o, f=f: nntrain.train_step(m, o, x, y, f, amp=amp))
            for name, (m, o, f) in variants.items()}


def step_times(config, x, y, device, amp, rounds, min_run_time):
    """Median seconds per step of every variant, and of the step's matrix products alone (``floor``)."""
    fns = _step_fns(_variants(config, device), x, y, amp)
    fns["floor"] = matmul_floor([x.shape[1], *config.hidden, nndata.NUM_CLASSES], x.shape[0], device, amp)
    return common.time_alternately(fns, device, rounds=rounds, min_run_time=min_run_time)


def profile_parts(config, x, y, device, amp, steps=10):
    """{variant: {category: ms per step}} for the custom and built-in steps, from torch.profiler's
    self time of each operator (``CATEGORIES``; ``other``: everything else, and ``total``)."""
    variants = _variants(config, device)
    out = {}
    for name, fn in _step_fns({k: variants[k] for k in ("custom", "builtin")}, x, y, amp).items():
        for _ in range(3):
            fn()  # warm up: allocator, caches, optimizer state
        with torch.profiler.profile() as prof:
            for _ in range(steps):
                fn()
        parts = dict.fromkeys([*CATEGORIES, "other"], 0.0)
        for event in prof.key_averages():
            where = next((c for c, names in CATEGORIES.items() if event.key in names), "other")
            parts[where] += event.self_cpu_time_total / 1e3 / steps
        parts["total"] = sum(parts.values())
        out[name] = parts
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_parts", description=__doc__.split("\n\n")[0])
    add_step_options(parser, batch_sizes="128,1024", min_run_time=0.5)
    parser.add_argument("--quick", action="store_true", help="a smoke test: a 784-64-10 MLP, batch 32, one short round")
    args = parser.parse_args(argv)
    precisions, batch_sizes = step_options(parser, args)
    device = torch.device(args.device)
    config = nntrain.Config(device=args.device, quiet=True)
    if args.quick:
        config = dataclasses.replace(config, hidden=[64])
        batch_sizes, args.rounds, args.min_run_time = [32], 1, 0.02
    data = nndata.load_splits(config.dataset, device=device, quiet=True)
    env = common.environment(device, torch.float32, "python -m benchmarks.step_parts",
                             sys.argv[1:] if argv is None else argv)
    warning = common.busy_warning(torch.get_num_threads())
    if warning:
        print("warning:", warning, file=sys.stderr)

    cases = [(config, b) for b in batch_sizes]
    cases.append((dataclasses.replace(config, hidden=TINY["hidden"]), TINY["batch_size"]))
    rows, profiles = [], []
    for precision in precisions:
        for case_config, batch_size in cases:
            x, y = first_batch(data, batch_size)
            amp = precision == "bfloat16"
            times = step_times(case_config, x, y, device, amp, args.rounds, args.min_run_time)
            mlp = "-".join(str(s) for s in (784, *case_config.hidden, nndata.NUM_CLASSES))
            if case_config is config:
                for name, parts in profile_parts(case_config, x, y, device, amp).items():
                    profiles.append({"mlp": mlp, "batch_size": batch_size, "precision": precision, "variant": name,
                                     "floor_ms": times["floor"] * 1e3, **{f"{k}_ms": v for k, v in parts.items()}})
            for name, seconds in times.items():
                rows.append({"mlp": mlp, "batch_size": batch_size, "precision": precision, "variant": name,
                             "step_ms": seconds * 1e3, "vs_builtin": seconds / times["builtin"],
                             "part_cost_ms": (times["custom"] - seconds) * 1e3 if name.startswith("custom, ") else None})
    result = {"environment": env, "rows": rows, "profiles": profiles}
    text = markdown(result)
    print(text)
    if args.json:
        files.write_json(args.json, result, indent=1)
    if args.markdown:
        files.write_text(args.markdown, text)
    return 0


def markdown(result):
    env = result["environment"]
    out = [(f"`{env['command']}` on {env['device_name']} (torch {env['torch']}, {env['threads']} threads, "
            f"load average {env['load_average']}, {env['date']})"), "",
           ("`part cost`: custom step minus this variant's step, i.e. what the part taken back from the "
            "built-in costs over it."), "",
           "| MLP | batch | precision | variant | step ms | vs built-in | part cost ms |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cost = "" if r["part_cost_ms"] is None else f"{r['part_cost_ms']:+.3f}"
        out.append(f"| {r['mlp']} | {r['batch_size']} | {r['precision']} | {r['variant']} | {r['step_ms']:.3f} | "
                   f"{r['vs_builtin']:.3f} | {cost} |")
    parts = [*CATEGORIES, "other", "total"]
    out += ["", ("What the step is made of (torch.profiler, self time per step, ms; `floor`: the matrix products "
                 "timed alone):"), "",
            "| MLP | batch | precision | variant | floor | " + " | ".join(parts) + " |", "|---|---|---|---|---|" + "---|" * len(parts)]
    for r in result.get("profiles", []):
        out.append(f"| {r['mlp']} | {r['batch_size']} | {r['precision']} | {r['variant']} | {r['floor_ms']:.3f} | "
                   + " | ".join(f"{r[p + '_ms']:.3f}" for p in parts) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
