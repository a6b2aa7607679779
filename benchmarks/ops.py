"""Every op of ``nnbasics.functional`` against its ``torch.nn.functional`` twin.

Run from the repository root (either form works)::

    python -m benchmarks.ops --quick                       # under a minute: does it all still run?
    python -m benchmarks.ops --device cpu --dtype float32 \\
        --json benchmarks/results/cpu-float32.json --markdown benchmarks/results/cpu-float32.md \\
        --plot benchmarks/results/cpu-float32.png
    python benchmarks/ops.py --device cuda --dtype bfloat16 --ops relu,cross_entropy

Each row is one (op, impl, size, mode), the hand-written implementation ``impl``
('custom': the readable autograd Functions of ``nnbasics.ops``; 'fused': their
compiled twins in ``nnbasics.fused``) against the built-in op, measured in the same
run, alternately (``benchmarks.common.time_alternately``). Ratios are hand / built-in:
below 1.0 the hand-written op is faster (or saves less), above 1.0 it pays.

Modes (all inputs that can have a gradient require one, as in training):

- forward:  ``y = f(x)``, building the autograd graph and saving tensors for backward;
- backward: ``torch.autograd.grad(y, inputs, dy, retain_graph=True)`` on a graph built
  once, outside the timed region (``autograd.grad`` returns the gradients instead of
  accumulating them into ``.grad``, so every call does the same work);
- fwd+bwd:  both, as one training step does them.

Throughput, for sizes whose largest tensor has ≥ 2^20 elements, divides a fixed amount
of work by the median time (see ``work``): the same work for both implementations, so
the two throughputs differ exactly as the times do. The share of the device's peak is
given where the peak is known (``benchmarks.common.DEVICE_PEAKS``: NVIDIA datacenter
GPUs; not CPUs).

Memory, per (op, impl, size): the bytes autograd saved for backward during one forward,
counted by ``torch.autograd.graph.saved_tensors_hooks`` (``benchmarks.common.SavedBytes``:
total over pack calls, unique storages, and storages other than the inputs'); the
saved ratio compares unique storages. On CUDA also the peak memory allocated during
forward+backward above what was allocated before (the inputs).

``--control`` adds, per (op, size, mode), a row whose "hand-written" op is the built-in one again,
alternating with the built-in as each implementation does: the ratio a run reports where there is
no difference at all, so how far from 1.00 a hand-written op's ratio must be before it means anything.

Freed memory stays in the process (``nnbasics.train.allocator``, as in training and
``benchmarks.train``; ``--malloc-defaults`` leaves glibc's settings): with glibc's defaults, a
16 MiB tensor freed near the top of the heap may be given back to the system and page-faulted
in anew by the next call, and whether that happens depends on the order of the small and large
allocations of each implementation, not on its arithmetic (benchmarks/results/README.md,
"Page faults in the training step").
"""
import argparse
import functools
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python benchmarks/ops.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from nnbasics.functional import IMPLS
from nnbasics.testing.registry import OPS, OPS_BY_NAME, ce_make, linear_make
from nnbasics.train import allocator, files

MODES = ("forward", "backward", "fwd+bwd")
CONTROL = "control"  # --control's rows: the built-in op timed against itself
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# The sweep, from latency-bound (a few thousand elements: launch and Python overhead
# dominate) to bandwidth-bound (≥ 16M elements: the memory passes dominate).
SIZES = [128 * 10, 2**16, 2**20, 2**24]  # elements, shaped by each op's OpInfo.make
LINEAR_SHAPES = [(64, 128, 10), (64, 784, 128), (1024, 1024, 1024), (4096, 4096, 4096)]  # (batch, in, out): MNIST's MLP, then square
CE_SHAPES = [(128, 10), (1024, 1000), (4096, 4096)]  # (rows, classes): MNIST, ImageNet, a square
# A language model's vocabulary. On the CPU 8192 rows would take 6.5 GB and minutes for this one
# row (the hand-written backward makes several (N, C) temporaries), so the CPU sweep uses 2048.
CE_LARGE_CLASSES = {"cuda": (8192, 32768), "cpu": (2048, 32768)}

QUICK_SIZES = SIZES[:1]  # --quick checks that everything runs, at one latency-bound size
QUICK_LINEAR_SHAPES = LINEAR_SHAPES[1:2]
QUICK_CE_SHAPES = CE_SHAPES[:1]

LARGE = 2**20  # elements in the largest tensor from which throughput is reported


# --------------------------------------------------------------------------- what is measured

def sweep(op, device: torch.device, sizes=None, quick=False):
    """The sample makers of ``op``'s sweep, smallest first: callables (device, dtype, requires_grad) -> Sample.

    ``sizes`` (numbers of elements) overrides the sweep for every op, through ``op.make``.
    """
    if sizes is not None:
        return [functools.partial(op.make, n) for n in sizes]
    if op.name == "linear":
        return [functools.partial(linear_make, *s) for s in (QUICK_LINEAR_SHAPES if quick else LINEAR_SHAPES)]
    if op.name == "cross_entropy":
        shapes = QUICK_CE_SHAPES if quick else CE_SHAPES + [CE_LARGE_CLASSES[device.type]]
        return [functools.partial(ce_make, *s) for s in shapes]
    return [functools.partial(op.make, n) for n in (QUICK_SIZES if quick else SIZES)]


def work(op_name: str, sample, mode: str):
    """The work one call must do, whoever implements it: (amount, 'B' or 'FLOP').

    linear counts floating-point operations, 2 per multiply-add: X (B, in) Wᵀ (in, out)
    is 2·B·in·out forward; backward computes dX and dW, two products of that size,
    4·B·in·out; the bias is negligible.

    Every other op counts the bytes the simplest correct implementation must move
    between memory and the chip, with n the bytes of one tensor of the input's
    size and dtype, every pass reading or writing such a tensor once:

    - activations, softmax, log_softmax: forward reads x, writes y (2n); backward
      reads dy and one saved tensor, writes dx (3n);
    - dropout: as above plus a 1-byte-per-element mask, written forward, read backward;
    - mse_loss, binary_cross_entropy(_with_logits): forward reads input and target
      (2n; the loss is a scalar); backward reads both and writes dx (3n);
    - cross_entropy: forward reads the logits and the int64 targets; backward reads
      them again and writes dx (2n).

    fwd+bwd is the sum. Intermediates that an implementation writes and reads back
    are *not* counted: they are what makes one implementation slower than another.
    """
    x = sample.args[0]
    if op_name == "linear":
        w = sample.args[1]
        mult_adds = (x.numel() // x.shape[-1]) * w.shape[0] * w.shape[1]
        forward, backward = 2 * mult_adds, 4 * mult_adds
        unit = "FLOP"
    else:
        n = x.numel() * x.element_size()
        if op_name == "cross_entropy":
            targets = sample.args[1].numel() * sample.args[1].element_size()
            forward, backward = n + targets, 2 * n + targets
        elif op_name == "dropout":
            forward, backward = 2 * n + x.numel(), 2 * n + x.numel()
        else:  # activations, softmax, log_softmax and the pairwise losses all read two and write one backward
            forward, backward = 2 * n, 3 * n
        unit = "B"
    return {"forward": forward, "backward": backward, "fwd+bwd": forward + backward}[mode], unit


def statements(fn, sample, grad, mode: str):
    """The timed callable for ``mode``: what one call of ``fn`` costs in that mode.

    For backward the graph is built here, once, outside the timed region, and kept by
    ``retain_graph=True``; ``grad`` is the incoming dL/dy, the same for every impl.
    """
    inputs = [a for a in sample.args if isinstance(a, torch.Tensor) and a.requires_grad]

    def forward():
        return fn(*sample.args, **sample.kwargs)

    def fwd_bwd():
        return torch.autograd.grad(forward(), inputs, grad)

    if mode == "forward":
        return forward
    if mode == "fwd+bwd":
        return fwd_bwd
    out = forward()
    return lambda: torch.autograd.grad(out, inputs, grad, retain_graph=True)


# --------------------------------------------------------------------------- one row

@dataclass
class Row:
    """One (op, impl, size, mode) against the built-in op; ratios are hand / built-in (None: undefined)."""

    op: str
    impl: str
    size: str  # the sample's shape, e.g. '1024x1000' or '64x784->128' for linear
    numel: int  # elements of the op's first input
    mode: str
    hand_ms: float
    builtin_ms: float
    time_ratio: float
    hand_saved_bytes: int  # SavedBytes.total
    hand_saved_unique_bytes: int  # SavedBytes.unique
    hand_saved_new_bytes: int  # SavedBytes.new
    builtin_saved_bytes: int
    builtin_saved_unique_bytes: int
    builtin_saved_new_bytes: int
    saved_ratio: float  # of the unique bytes
    hand_peak_bytes: int  # CUDA only: peak allocated during forward+backward
    builtin_peak_bytes: int
    peak_ratio: float
    unit: str  # 'GB/s' or 'TFLOP/s'
    hand_throughput: float  # None below LARGE
    builtin_throughput: float
    hand_peak_share: float  # fraction of the device's peak, None where unknown
    builtin_peak_share: float


def _ratio(a, b):
    return a / b if a is not None and b else None


def _rate(amount, unit, seconds, peak):
    """(throughput in ``unit``, 'GB/s' or 'TFLOP/s'; its share of ``peak``, per second, or None if unknown)."""
    per_second = amount / seconds
    return per_second / (1e9 if unit == "GB/s" else 1e12), _ratio(per_second, peak)


def measure(op, impls, sample, device, dtype, args) -> list:
    """All rows of one op at one size: saved bytes and peak memory once, then each mode timed."""
    fns = {"builtin": op.builtin, **{impl: op.custom(impl) for impl in impls}}
    if args.control:
        fns[CONTROL] = op.builtin
        impls = [*impls, CONTROL]
    with torch.no_grad():
        out = op.builtin(*sample.args, **sample.kwargs)
    grad = torch.ones_like(out) if out.dim() == 0 else torch.randn_like(out)
    tensors = [a for a in sample.args if isinstance(a, torch.Tensor)]
    saved = {k: common.saved_tensor_bytes(lambda f=f: f(*sample.args, **sample.kwargs), tensors) for k, f in fns.items()}
    peak = {k: common.peak_memory_bytes(statements(f, sample, grad, "fwd+bwd"), device) for k, f in fns.items()}
    large = max(t.numel() for t in tensors) >= LARGE
    rows = []
    for mode in args.modes:
        amount, unit = work(op.name, sample, mode)
        unit = "GB/s" if unit == "B" else "TFLOP/s"
        peak_rate = common.device_peak(common.device_name(device), dtype, unit)
        for impl in impls:
            # each impl alternates with the built-in on its own, as a program runs one impl: the
            # textbook's many temporaries, timed in the same rounds, slowed the fast path's activations
            # by up to a sixth (benchmarks/results/README.md, "One impl at a time")
            timed = {k: statements(fns[k], sample, grad, mode) for k in ("builtin", impl)}
            seconds = common.time_alternately(timed, device, rounds=args.repeats, min_run_time=args.min_run_time)
            del timed  # frees the graphs kept for backward
            hand, hand_share = _rate(amount, unit, seconds[impl], peak_rate) if large else (None, None)
            builtin, builtin_share = _rate(amount, unit, seconds["builtin"], peak_rate) if large else (None, None)
            rows.append(Row(
                op=op.name, impl=impl, size=sample.desc, numel=sample.args[0].numel(), mode=mode,
                hand_ms=seconds[impl] * 1e3, builtin_ms=seconds["builtin"] * 1e3,
                time_ratio=seconds[impl] / seconds["builtin"],
                hand_saved_bytes=saved[impl].total, hand_saved_unique_bytes=saved[impl].unique,
                hand_saved_new_bytes=saved[impl].new, builtin_saved_bytes=saved["builtin"].total,
                builtin_saved_unique_bytes=saved["builtin"].unique, builtin_saved_new_bytes=saved["builtin"].new,
                saved_ratio=_ratio(saved[impl].unique, saved["builtin"].unique),
                hand_peak_bytes=peak[impl], builtin_peak_bytes=peak["builtin"], peak_ratio=_ratio(peak[impl], peak["builtin"]),
                unit=unit, hand_throughput=hand, builtin_throughput=builtin,
                hand_peak_share=hand_share, builtin_peak_share=builtin_share,
            ))
    return rows


# --------------------------------------------------------------------------- reports

COLUMNS = ["op", "size", "mode", "impl", "hand ms", "built-in ms", "time ×", "saved ×", "peak ×", "throughput hand / built-in", "% of peak"]


def _num(x, fmt="{:.3g}"):
    return "–" if x is None else fmt.format(x)


def cells(row: Row, cuda: bool) -> list:
    """The table cells of one row (the 'peak ×' column only on CUDA)."""
    if row.hand_throughput is None:
        rate = share = "–"
    else:
        rate = f"{row.hand_throughput:.3g} / {row.builtin_throughput:.3g} {row.unit}"
        share = "–" if row.hand_peak_share is None else f"{row.hand_peak_share:.0%} / {row.builtin_peak_share:.0%}"
    out = [
        row.op, row.size, row.mode, row.impl, _num(row.hand_ms), _num(row.builtin_ms),
        _num(row.time_ratio, "{:.2f}"), _num(row.saved_ratio, "{:.2f}"), _num(row.peak_ratio, "{:.2f}"), rate, share,
    ]
    return out if cuda else out[:8] + out[9:]


def columns(cuda: bool) -> list:
    return COLUMNS if cuda else COLUMNS[:8] + COLUMNS[9:]


WIDTHS = {"op": 32, "size": 16, "mode": 8, "impl": 7, "throughput hand / built-in": 26}


def console_line(values, cuda):
    return "  ".join(f"{v:<{WIDTHS.get(c, max(len(c), 7))}}" for c, v in zip(columns(cuda), values))


def markdown(header: dict, notes: list, rows: list) -> str:
    cuda = header["device"] == "cuda"
    lines = [
        f"# nnbasics ops against torch.nn.functional: {header['device_name']}, {header['dtype']}",
        "",
        *[f"- {key}: `{value}`" for key, value in header.items() if value is not None],
        *[f"- note: {note}" for note in notes],
        "",
        "Ratios are hand-written / built-in (below 1: the hand-written op is faster or saves less). "
        "`saved ×`: unique bytes saved for backward; "
        + ("`peak ×`: peak memory allocated during forward+backward; " if cuda else "")
        + "throughput and % of the device's peak for sizes of ≥ 2^20 elements "
        "(GB/s of minimal memory traffic, or TFLOP/s for linear; see `benchmarks/ops.py`).",
        "",
        "| " + " | ".join(columns(cuda)) + " |",
        "|" + "|".join("---" for _ in columns(cuda)) + "|",
    ]
    lines += ["| " + " | ".join(cells(row, cuda)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(path: str, header: dict, rows: list) -> str:
    """Time ratio against size, one line per op, one panel per (impl, mode). Returns a note if it could not plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "--plot: matplotlib is not installed; no plot written"
    impls = sorted({r.impl for r in rows}, key=[*IMPLS, CONTROL].index)
    modes = [m for m in MODES if any(r.mode == m for r in rows)]
    fig, axes = plt.subplots(len(impls), len(modes), figsize=(5 * len(modes), 4 * len(impls)), squeeze=False, sharey=True)
    colors = plt.get_cmap("tab10").colors  # 10 distinct colours, then the same with dashes
    for i, impl in enumerate(impls):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            for k, op in enumerate(dict.fromkeys(r.op for r in rows)):
                pts = sorted((r.numel, r.time_ratio) for r in rows if (r.op, r.impl, r.mode) == (op, impl, mode))
                if pts:
                    style = "-" if k < len(colors) else "--"
                    ax.plot(*zip(*pts), style, marker="o", color=colors[k % len(colors)], label=op)
            ax.axhline(1.0, color="black", linewidth=1)
            ax.set(xscale="log", yscale="log", title=f"{impl}, {mode}", xlabel="elements of the input")
            if j == 0:
                ax.set_ylabel("time hand / built-in (log)")
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{header['device_name']}, {header['dtype']}, torch {header['torch']}, {header['threads']} threads")
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------- command line

def _names(text, valid, what):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(valid)}")
    return names


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ops",
        description="Time and memory of every nnbasics.functional op against its torch.nn.functional twin.",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if common.cuda_usable() else "cpu",
                   help="where to run (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help="dtype of the inputs (default: float32)")
    p.add_argument("--impl", type=lambda s: _names(s, IMPLS, "impl"), default=list(IMPLS),
                   help="hand-written implementations to compare with the built-in op (default: custom,fused where available)")
    p.add_argument("--ops", type=lambda s: _names(s, list(OPS_BY_NAME), "op"), default=[op.name for op in OPS],
                   help="comma-separated op names (default: all of nnbasics.testing.OPS)")
    p.add_argument("--modes", type=lambda s: _names(s, MODES, "mode"), default=list(MODES),
                   help="comma-separated modes: forward, backward, fwd+bwd (default: all)")
    p.add_argument("--sizes", type=lambda s: [int(float(n)) for n in s.split(",")], default=None,
                   help="comma-separated element counts for every op, shaped by its OpInfo.make "
                        "(default: a sweep from 1280 to 2^24, linear and cross_entropy at their own shapes)")
    p.add_argument("--repeats", type=int, default=None, help="alternating rounds per row (default: 3; --quick: 1)")
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds per measurement of one impl in one round (default: 0.1; --quick: 0.01)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch.get_num_threads(); on a machine shared with "
                        "other jobs, 1 avoids threads waiting for each other's time slices)")
    p.add_argument("--malloc-defaults", action="store_true",
                   help="leave glibc's malloc settings as they are (default: keep freed memory for reuse, as "
                        "nnbasics.train and benchmarks.train do, for every impl: nnbasics/train/allocator.py)")
    p.add_argument("--control", action="store_true",
                   help="also time the built-in op against itself, alternating as each impl does (impl 'control'): "
                        "the ratio this run gives where nothing differs")
    p.add_argument("--quick", action="store_true", help="small sizes, one short round: a smoke test (< 60 s)")
    p.add_argument("--json", metavar="FILE", help="write header, notes and rows as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown table (for the README)")
    p.add_argument("--plot", metavar="FILE.png", help="plot the time ratio against size (needs matplotlib)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.min_run_time = args.min_run_time or (0.01 if args.quick else 0.1)
    return args


def benchmark(args, device, dtype, impls) -> list:
    """Measure every op of ``args.ops`` at every size of its sweep; print each row as it comes."""
    cuda = device.type == "cuda"
    print(console_line(columns(cuda), cuda), flush=True)
    rows = []
    for name in args.ops:
        op = OPS_BY_NAME[name]
        for make in sweep(op, device, args.sizes, args.quick):
            sample = make(device, dtype, True)
            for row in measure(op, impls, sample, device, dtype, args):
                rows.append(row)
                print(console_line(cells(row, cuda), cuda), flush=True)
            del sample
            if cuda:
                torch.cuda.empty_cache()  # hand the big sizes' blocks back before the next op
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if common.cuda_missing(args.device, "python -m benchmarks.ops"):
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.malloc_defaults:
        allocator.keep_freed_memory()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    header = common.environment(device, dtype, "python -m benchmarks.ops", argv)
    print(f"{header['device_name']} | torch {header['torch']} | {header['threads']} threads | {header['dtype']} | {header['timer']}")
    notes = []

    def note(text):
        notes.append(text)
        print(f"note: {text}", flush=True)

    if device.type == "cpu" and (warning := common.busy_warning(torch.get_num_threads())):
        note(warning)
    if args.control:
        note(f"impl '{CONTROL}' is the built-in op timed against itself, alternating with it as each impl does: "
             f"how far its ratio is from 1.00 is this run's noise")
    impls = list(args.impl)
    if not impls:
        print("--impl: name at least one of custom, fused", file=sys.stderr)
        return 2

    rows = benchmark(args, device, dtype, impls)
    if args.json:
        files.write_json(args.json, {"header": header, "notes": notes, "rows": [asdict(r) for r in rows]},
                         indent=1, allow_nan=False)
    if args.markdown:
        files.write_text(args.markdown, markdown(header, notes, rows))
    if args.plot and (problem := plot(args.plot, header, rows)):
        note(problem)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
