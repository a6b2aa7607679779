"""Bytes saved for backward by the graphs people build: hand-written vs built-in, per activation.

    python -m benchmarks.saved [--device cpu|cuda] [--dtype float32|bfloat16] [--json FILE] [--markdown FILE]
    python -m benchmarks.saved --quick          # small widths: does it all still run?

A lone op's saved bytes (``benchmarks.ops``' "saved ×") do not tell what a network keeps: a
tensor saved by two ops is one storage. Here each activation runs inside the chains a network
is made of, through ``nnbasics.functional`` (one op at a time, as a user writes them) and
through ``nnbasics.nn.MLP`` (which knows its graph), against the same chain of built-ins:

- ``linear→act→linear``:          x → Linear(in, H) → act → Linear(H, out)
- ``linear→act→dropout→linear``:  the same with Dropout(p) after the activation
- ``act→loss``:                   x → Linear(in, H) → act → cross_entropy over H classes (the Linear
                                  makes the activation's input an intermediate, as in a network)
- ``MLP``, ``MLP+dropout``:        ``nn.MLP(sizes, act, dropout)`` in training mode, then cross_entropy

Every forward runs under ``torch.autograd.graph.saved_tensors_hooks`` and every distinct storage
is counted once (``benchmarks.common.saved_tensor_bytes``). "activations" are the storages that
exist only because backward needs them; the parameters and the input batch, which the caller
holds anyway and both sides save alike, are reported apart. Bytes do not depend on timing, so
one run is exact on any machine.
"""
import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python benchmarks/saved.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as TF

import nnbasics.functional as F
from benchmarks import common
from nnbasics.functional import IMPLS
from nnbasics.nn import ACTIVATIONS, MLP
from nnbasics.train import files

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CHAINS = ("linear→act→linear", "linear→act→dropout→linear", "act→loss", "MLP", "MLP+dropout")
SIZES = [784, 1024, 1024, 10]  # nnbasics.train.Config's defaults: MNIST in, two hidden layers of 1024, 10 classes
BATCH = 128
DROPOUT = 0.2  # nnbasics.train.Config's default
QUICK_SIZES, QUICK_BATCH = [20, 16, 16, 5], 8


@dataclass
class Row:
    activation: str
    chain: str
    impl: str
    hand_bytes: int  # activations saved for backward: unique storages, parameters and batch excluded
    builtin_bytes: int
    ratio: float
    hand_apart_bytes: int  # parameters and input batch, saved by both sides
    builtin_apart_bytes: int


def _chain(chain, activation, impl, sizes, batch, device, dtype):
    """(run, inputs): ``run()`` is one forward of ``chain``; ``inputs`` the parameters and batch."""
    fns = TF if impl == "builtin" else F
    kw = {} if impl == "builtin" else {"impl": impl}
    act = getattr(fns, activation)
    gen = torch.Generator().manual_seed(0)

    def t(*shape, grad=True):
        return torch.randn(*shape, generator=gen).to(device, dtype).requires_grad_(grad)

    x = t(batch, sizes[0], grad=False)
    target = torch.randint(0, sizes[-1], (batch,), generator=gen).to(device)
    if chain.startswith("MLP"):
        torch.manual_seed(0)
        model = MLP(sizes, activation, dropout=DROPOUT if chain == "MLP+dropout" else 0.0,
                    impl=impl, device=device, dtype=dtype).train()
        loss = TF.cross_entropy if impl == "builtin" else F.cross_entropy
        return (lambda: loss(model(x), target, **kw)), [x, target, *model.parameters()]
    hidden, out = sizes[1], sizes[-1]
    if chain == "act→loss":
        w, b = t(hidden, sizes[0]), t(hidden)
        target = torch.randint(0, hidden, (batch,), generator=gen).to(device)
        return (lambda: fns.cross_entropy(act(fns.linear(x, w, b, **kw), **kw), target, **kw)), [x, target, w, b]
    w1, b1, w2, b2 = t(hidden, sizes[0]), t(hidden), t(out, hidden), t(out)

    def run():
        h = act(fns.linear(x, w1, b1, **kw), **kw)
        if chain == "linear→act→dropout→linear":
            h = fns.dropout(h, DROPOUT, **kw)
        return fns.linear(h, w2, b2, **kw)

    return run, [x, target, w1, b1, w2, b2]


def measure(activations, device, dtype, sizes, batch, impls) -> list:
    rows = []
    for activation in activations:
        for chain in CHAINS:
            saved = {}
            for impl in ("builtin", *impls):
                run, inputs = _chain(chain, activation, impl, sizes, batch, device, dtype)
                saved[impl] = common.saved_tensor_bytes(run, inputs)
            b = saved["builtin"]
            for impl in impls:
                s = saved[impl]
                rows.append(Row(activation, chain, impl, s.new, b.new, s.new / b.new if b.new else None,
                                s.unique - s.new, b.unique - b.new))
    return rows


def markdown(header: dict, rows: list) -> str:
    lines = [
        f"# Bytes saved for backward, nnbasics against torch: {header['device_name']}, {header['dtype']}",
        "",
        *[f"- {key}: `{value}`" for key, value in header.items() if value is not None],
        "",
        ("Activations saved for backward (distinct storages, parameters and input batch excluded), "
         "hand-written / built-in: below 1 the hand-written network keeps less. "
         f"Batch {header['batch']}, sizes {header['sizes']}, dropout {header['dropout']}; "
         "parameters and batch (the same on both sides) in the last column."),
        "",
        "| activation | chain | impl | hand KiB | built-in KiB | saved × | parameters + batch KiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "–" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"| {r.activation} | {r.chain} | {r.impl} | {r.hand_bytes / 1024:.0f} | "
                     f"{r.builtin_bytes / 1024:.0f} | {ratio} | {r.builtin_apart_bytes / 1024:.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.saved",
                                description="Bytes saved for backward by Linear/activation/Dropout chains and nn.MLP, "
                                            "hand-written against built-in.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if common.cuda_usable() else "cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--quick", action="store_true", help="tiny widths: a smoke test (seconds)")
    p.add_argument("--json", metavar="FILE", help="write header and rows as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown table")
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if common.cuda_missing(args.device, "python -m benchmarks.saved"):
        return 2
    sizes, batch = (QUICK_SIZES, QUICK_BATCH) if args.quick else (SIZES, BATCH)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    header = {**common.environment(device, dtype, "python -m benchmarks.saved", argv),
              "batch": batch, "sizes": sizes, "dropout": DROPOUT}
    rows = measure(ACTIVATIONS, device, dtype, sizes, batch, IMPLS)
    print(markdown(header, rows))
    if args.json:
        files.write_json(args.json, {"header": header, "rows": [asdict(r) for r in rows]}, indent=1, allow_nan=False)
    if args.markdown:
        files.write_text(args.markdown, markdown(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
