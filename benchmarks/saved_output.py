"""What saving an activation's output instead of its input costs and saves (docs/benchmarks.md).

The textbook's leaky_relu and hardtanh save their output y (``nnbasics/ops``: the next layer keeps
y anyway); the built-ins save their input x, and so does the fast path's leaky_relu (its hardtanh
keeps y). The derivative is the same from either. Two measurements, alternating in one process:

- one op alone, forward and backward at 4096×1024 (as ``benchmarks.ops`` times it): the built-in,
  ``nnbasics.fused``'s Function, and the same Function saving the other tensor;
- the training step of an MLP (784-1024-1024-10, leaky_relu, cross-entropy) with the same three
  leaky_relus, and the bytes each forward saves beyond its input (``saved_tensors_hooks``).

Freed memory stays in the process, as in ``benchmarks.ops`` (``--malloc-defaults``: glibc's settings).

From the repository root:

    python -m benchmarks.saved_output [--batch-sizes 256,1024] [--threads 1] [--rounds 5]
"""
import argparse

import torch

from benchmarks import common
from nnbasics import fused, ops
from nnbasics.train import allocator


class LeakyReLUSavingOutput(fused.LeakyReLU):
    """The fast path's leaky_relu, saving y as the textbook does."""

    setup_context = staticmethod(ops.LeakyReLU.setup_context)


class HardtanhSavingInput(fused.Hardtanh):
    """The fast path's hardtanh, saving x as the built-in does."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.min_val, ctx.max_val = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)


ACTIVATIONS = {
    "leaky_relu": {"builtin": lambda x: torch.nn.functional.leaky_relu(x, 0.01),
                   "fused": lambda x: fused.LeakyReLU.apply(x, 0.01),
                   "saving y": lambda x: LeakyReLUSavingOutput.apply(x, 0.01)},
    "hardtanh": {"builtin": torch.nn.functional.hardtanh,
                 "fused": lambda x: fused.Hardtanh.apply(x, -1.0, 1.0),
                 "saving x": lambda x: HardtanhSavingInput.apply(x, -1.0, 1.0)},
}


class Activation(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def mlp(fn):
    torch.manual_seed(0)  # the same weights for every variant
    return torch.nn.Sequential(torch.nn.Linear(784, 1024), Activation(fn), torch.nn.Linear(1024, 1024),
                               Activation(fn), torch.nn.Linear(1024, 10))


def _ratios(times: dict) -> str:
    return "; ".join(f"{name} {t / times['builtin']:.2f}x" for name, t in times.items())


def single_ops(rounds: int, shape=(4096, 1024)) -> dict:
    """{activation: {variant: median seconds}} of forward+backward of the op alone."""
    x = torch.randn(*shape, requires_grad=True)
    grad = torch.randn(*shape)
    result = {}
    for name, variants in ACTIVATIONS.items():
        fns = {k: (lambda f=f: torch.autograd.grad(f(x), [x], grad)) for k, f in variants.items()}
        result[name] = common.time_alternately(fns, torch.device("cpu"), rounds=rounds, min_run_time=0.2)
    return result


def mlp_steps(batch: int, rounds: int) -> tuple:
    """({variant: median seconds per training step}, {variant: MiB saved beyond the input}) for leaky_relu."""
    models = {k: mlp(f) for k, f in ACTIVATIONS["leaky_relu"].items()}
    x, t = torch.randn(batch, 784), torch.randint(0, 10, (batch,))

    def step(model):
        torch.nn.functional.cross_entropy(model(x), t).backward()
        for p in model.parameters():
            p.grad = None

    times = common.time_alternately({k: (lambda m=m: step(m)) for k, m in models.items()}, torch.device("cpu"),
                                    rounds=rounds, min_run_time=0.3)
    saved = {k: common.saved_tensor_bytes(lambda m=m: m(x).sum(), (x,)).new / 2 ** 20 for k, m in models.items()}
    return times, saved


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.saved_output", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shape", default="4096,1024", help="the single op's input shape (default: 4096,1024)")
    parser.add_argument("--malloc-defaults", action="store_true",
                        help="leave glibc's malloc settings as they are (default: keep freed memory, as benchmarks.ops does)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.malloc_defaults:
        allocator.keep_freed_memory()
    print(f"{common.device_name(torch.device('cpu'))} | torch {torch.__version__} | {args.threads} thread(s) | "
          f"float32 | {allocator.status()} | load average {common.load_average()} | time / the built-in's, alternating")
    shape = tuple(map(int, args.shape.split(",")))
    for name, times in single_ops(args.rounds, shape).items():
        print(f"{name} alone, forward+backward at {'x'.join(map(str, shape))} "
              f"(built-in {times['builtin'] * 1e3:.2f} ms): {_ratios(times)}")
    for batch in map(int, args.batch_sizes.split(",")):
        times, saved = mlp_steps(batch, args.rounds)
        print(f"MLP step, leaky_relu, batch {batch} (built-in {times['builtin'] * 1e3:.1f} ms): {_ratios(times)}; "
              "MiB saved beyond the input: " + ", ".join(f"{k} {v:.1f}" for k, v in saved.items()))
    print(f"load average after: {common.load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
