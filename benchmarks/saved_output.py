"""What saving leaky_relu's output instead of its input costs and saves in a network (docs/benchmarks.md):
the training step of an MLP (784-1024-1024-10, leaky_relu, cross-entropy) with three activations, alternating:

- ``builtin``: ``torch.nn.functional.leaky_relu``, which saves its input x;
- ``fused``: ``nnbasics.fused.LeakyReLU``, which saves its output y as the textbook does (the next Linear keeps
  y anyway, so nothing new is kept for the activation);
- ``fused, saving x``: the same kernels, saving x as the built-in does.

Per batch size: the step's time over the built-in's, and the bytes each forward saves beyond its input
(``saved_tensors_hooks``). From the repository root:

    python -m benchmarks.saved_output [--batch-sizes 256,1024] [--threads 1] [--rounds 5]
"""
import argparse

import torch

from benchmarks import common
from nnbasics import fused


class LeakyReLUSavingInput(fused.LeakyReLU):
    """The fast path's leaky_relu, saving x (as the built-in does) instead of y."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.negative_slope = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)


class Activation(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x, 0.01)


def mlp(fn):
    torch.manual_seed(0)  # the same weights for every variant
    return torch.nn.Sequential(torch.nn.Linear(784, 1024), Activation(fn), torch.nn.Linear(1024, 1024),
                               Activation(fn), torch.nn.Linear(1024, 10))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.saved_output", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    models = {"builtin": mlp(torch.nn.functional.leaky_relu), "fused": mlp(fused.LeakyReLU.apply),
              "fused, saving x": mlp(LeakyReLUSavingInput.apply)}
    print(f"{common.device_name(cpu)} | torch {torch.__version__} | {args.threads} thread(s) | float32 | "
          f"load average {common.load_average()} | step time / the built-in's, alternating; MiB saved beyond the input")
    for batch in map(int, args.batch_sizes.split(",")):
        x, t = torch.randn(batch, 784), torch.randint(0, 10, (batch,))

        def step(model, x=x, t=t):
            torch.nn.functional.cross_entropy(model(x), t).backward()
            for p in model.parameters():
                p.grad = None

        times = common.time_alternately({k: (lambda m=m: step(m)) for k, m in models.items()}, cpu,
                                        rounds=args.rounds, min_run_time=0.3)
        row = []
        for name, model in models.items():
            saved = common.saved_tensor_bytes(lambda model=model, x=x: model(x).sum(), (x,)).new / 2 ** 20
            row.append(f"{name} {times[name] / times['builtin']:.2f}x, {saved:.1f} MiB")
        print(f"batch {batch} (built-in step {times['builtin'] * 1e3:.1f} ms): " + "; ".join(row))
    print(f"load average after: {common.load_average()}")


if __name__ == "__main__":
    main()
