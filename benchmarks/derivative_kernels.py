"""Why the fast path calls ATen's derivative kernels for six ops (docs/fused.md, "ATen's kernels"):
each backward of sigmoid, tanh, relu, leaky_relu, softmax and log_softmax timed three ways on the
same saved tensor and upstream gradient, outside autograd, alternating in rounds; and hardtanh's,
whose fast path runs a C loop instead (ATen's kernel has no single rule at a NaN input):

- ``aten``: the single kernel PyTorch's own autograd calls (``sigmoid_backward``, ``threshold_backward``, ...);
- ``compiled``: the textbook's formula (``nnbasics.ops``) compiled as ``nnbasics.fused.kernels`` compiles;
- ``textbook``: the same formula run eagerly, op by op;
- ``c loop``: hardtanh's only, ``nnbasics.fused.cloop``.

From the repository root:

    python -m benchmarks.derivative_kernels [--rows 4096] [--cols 1024] [--threads 1] [--dtype float32]
"""
import argparse
import functools

import torch

from benchmarks import common
from nnbasics.fused import cloop
from nnbasics.ops import hardtanh, leaky_relu, relu, sigmoid, softmax, tanh

aten = torch.ops.aten
TOLERANCE = {"float32": {"rtol": 2e-2, "atol": 1e-5}, "bfloat16": {"rtol": 6e-2, "atol": 2**-7}}


def cases(y, x, g):
    """name -> (ATen's kernel, the textbook's formula, its arguments)."""
    z = torch.log_softmax(x, 1)
    p = torch.softmax(x, 1)
    return {
        "sigmoid": (aten.sigmoid_backward, sigmoid.sigmoid_derivative_times, (g, torch.sigmoid(x))),
        "tanh": (aten.tanh_backward, tanh.tanh_derivative_times, (g, torch.tanh(x))),
        "relu": (lambda v, y: aten.threshold_backward(v, y, 0), relu.relu_derivative_times, (g, y)),
        "leaky_relu": (lambda v, s: aten.leaky_relu_backward(v, s, 0.01, False),
                       lambda v, s: leaky_relu.leaky_relu_derivative_times(v, s, 0.01), (g, aten.leaky_relu(x, 0.01))),
        "softmax": (lambda v, y: aten._softmax_backward_data(v, y, 1, y.dtype),
                    lambda v, y: softmax.softmax_jacobian_times(v, y, 1), (g, p)),
        "log_softmax": (lambda v, z: aten._log_softmax_backward_data(v, z, 1, z.dtype),
                        lambda v, z: softmax.log_softmax_backward(v, z, 1), (g, z)),
        "hardtanh": (lambda v, y: aten.hardtanh_backward(v, y, -1.0, 1.0),
                     lambda v, y: hardtanh.hardtanh_derivative_times(v, y, -1.0, 1.0), (g, x.clamp(-1.0, 1.0))),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.derivative_kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype, cpu = getattr(torch, args.dtype), torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.cols, generator=gen).to(dtype)
    g = torch.randn(args.rows, args.cols, generator=gen).to(dtype)
    print(f"{common.device_name(cpu)} | torch {torch.__version__} | {args.threads} thread(s) | {args.dtype} "
          f"{args.rows}x{args.cols} | load average {common.load_average()} | median ms, alternating")
    print(f"{'backward':12} {'aten':>8} {'compiled':>9} {'textbook':>9} {'c loop':>7}  compiled / aten  c loop / aten")
    with torch.no_grad():
        for name, (kernel, formula, inputs) in cases(torch.relu(x), x, g).items():
            compiled = torch.compile(formula, dynamic=True, fullgraph=True, options={"cpp.dynamic_threads": True})
            fns = {k: functools.partial(f, *inputs) for k, f in (("aten", kernel), ("compiled", compiled), ("textbook", formula))}
            if name == "hardtanh" and cloop.serves(*inputs):
                fns["c loop"] = functools.partial(cloop.hardtanh_derivative_times, *inputs, -1.0, 1.0)
            for k in set(fns) - {"aten"}:  # a sanity check: bfloat16's formulas round at every step
                torch.testing.assert_close(fns[k](), fns["aten"](), **TOLERANCE[args.dtype])
            ms = {k: v * 1e3 for k, v in common.time_alternately(fns, cpu, rounds=args.rounds, min_run_time=0.3).items()}
            c_loop = (f"{ms['c loop']:7.2f}", f"{ms['c loop'] / ms['aten']:15.2f}") if "c loop" in ms else (f"{'-':>7}", "")
            print(f"{name:12} {ms['aten']:8.2f} {ms['compiled']:9.2f} {ms['textbook']:9.2f} {c_loop[0]}  "
                  f"{ms['compiled'] / ms['aten']:15.2f}{c_loop[1]}")
    print(f"load average after: {common.load_average()}")


if __name__ == "__main__":
    main()
