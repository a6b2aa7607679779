"""``kernel``: a formula compiled into one fused loop, where compiling applies.

Each reference formula spelled out as a few tensor operations is a few passes over memory;
``torch.compile`` (C++/OpenMP loops on the CPU, Triton on CUDA) fuses it into one loop that
reads each input once and writes each output once. Where compiling cannot apply, the kernel runs
a formula eagerly, which is the same math:

- when autograd is recording (double backward, ``create_graph=True``): the formula must then be
  differentiable op by op;
- inside ``torch.func`` transforms (vmap, grad, jvp) and inside an outer ``torch.compile``, which
  traces the formula itself and fuses across ops;
- for tensors below ``MIN_ELEMENTS``, where a compiled call's fixed cost exceeds the formula.

Compiling costs seconds once per kind of input (dtype, device, rank, ...); ``dynamic=True`` keeps
new sizes from recompiling, and Inductor caches the result on disk, so a later process pays much
less. ``python -m benchmarks.ops --impl fused`` measures what it wins.
"""
import functools
import types
import warnings

import torch

from ._torch_private import has_storage


def _plain(a) -> bool:
    """Not a tensor, or a non-empty one with storage of its own (not a torch.func or legacy-vmap
    wrapper), holding data (not on meta). An empty or meta tensor has nothing to fuse, and would
    cost a compile of its own."""
    return not isinstance(a, torch.Tensor) or (has_storage(a) and a.numel() > 0 and not a.is_meta)


MIN_ELEMENTS = 4096
"""Below this many elements in its largest tensor, a kernel runs its formula eagerly: a
compiled call has a fixed cost (Dynamo's guards, Inductor's wrapper) that exceeds the whole
eager formula on small tensors (``benchmarks/results/README.md``, "Small tensors"), and every
new kind of input would cost a compile of its own for no gain."""


def _large(args, min_elements: int) -> bool:
    return any(isinstance(a, torch.Tensor) and a.numel() >= min_elements for a in args)


def _on_cpu(args) -> bool:
    return any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args)


def _kind(args) -> tuple:
    """What compiled code is specialized on: each tensor's device, dtype, rank and whether it is
    contiguous, and the values of the other arguments (reduction, dim, ...)."""
    return tuple((a.device.type, a.dtype, a.dim(), a.is_contiguous()) if isinstance(a, torch.Tensor) else a
                 for a in args)


def _own_copy(formula):
    """``formula`` as a new function object with its own code object.

    Dynamo keeps its compiled versions, and its ``recompile_limit`` (8), per code object; a
    copy gives each kind of input its own cache and its own budget."""
    code = formula.__code__.replace()
    copy = types.FunctionType(code, formula.__globals__, formula.__name__, formula.__defaults__, formula.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = formula.__kwdefaults__, formula.__qualname__
    return copy


_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _in_float32(formula, low, keep):
    """``formula`` computed in float32 for its ``low``-precision (16-bit) tensors, its tensors cast
    back to ``low`` but for the tuple positions in ``keep``: inside the compiled loop the casts fuse
    into the loads and stores."""
    def upcast(*args):
        out = formula(*(a.float() if isinstance(a, torch.Tensor) and a.dtype == low else a for a in args))
        if isinstance(out, tuple):
            return tuple(o if o is None or i in keep else o.to(low) for i, o in enumerate(out))
        return out.to(low)
    return upcast


def kernel(formula, *, cpu=True, min_elements=None, eager=None, worth=None, float32=False, keep=frozenset()):
    """``formula`` compiled into one fused loop, where compiling applies (see the module docstring).

    Each kind of input (``_kind``: devices, dtypes, ranks, contiguity, option values) gets a
    compiled version of its own, made on its first call; ``dynamic=True`` lets it serve every
    size. A program that varies dtypes, ranks or options thus does not run into Dynamo's
    recompile limit, which counts the versions of one function (8): each kind has its own.

    ``cpu=False``: run the formula eagerly on CPU tensors. For the formulas that read or write
    a bool mask: Inductor's vectorized C++ handles bool masks slowly (torch 2.13, AVX-512), so
    the compiled loop loses to eager ops there (measured in ``benchmarks/results/README.md``).
    Triton on CUDA has no such problem.

    ``min_elements``: run eagerly unless some tensor has at least this many elements (default:
    ``MIN_ELEMENTS``, read at each call).

    ``eager``: what runs where compiling does not apply (default: ``formula`` itself), the same
    math: the fast path passes its CPU twins of a formula (``masks.py``, ``dropout.py``).

    ``worth``: a test of the arguments, false where the compiled loop saves too little per call to
    ever repay its compile (seconds); those calls run eagerly.

    ``float32``: compile the formula computed in float32 for 16-bit float inputs, as PyTorch's own
    kernels compute them (its results cast back). Inductor otherwise keeps the formula's
    intermediate tensors (a row's max and sums) in the 16-bit dtype, converting them at every use.
    ``keep``: the positions of the formula's tuple outputs that stay in float32 (a frozenset: a
    statistic of each row that backward reads, which 16 bits would round).

    If compiling fails (no C++ compiler, ...), the kernel says so in one warning and from then
    on runs the formula eagerly for inputs of that kind, which ``run.fallbacks`` lists;
    ``run.compiled`` maps each compiled kind to its compiled function.
    """
    compiled = {}  # kind -> compiled function
    fallbacks = set()
    eager = formula if eager is None else eager

    @functools.wraps(formula)
    def run(*args):
        if (torch.compiler.is_compiling() or torch.is_grad_enabled() or not all(map(_plain, args))
                or (not cpu and _on_cpu(args))
                or not _large(args, MIN_ELEMENTS if min_elements is None else min_elements)
                or (worth is not None and not worth(*args))):
            return eager(*args)
        kind = _kind(args)
        fn = compiled.get(kind)
        if fn is None:
            if kind in fallbacks:
                return eager(*args)
            # cpp.dynamic_threads: without it Inductor's C++ loops over symbolic sizes run on one thread
            low = next((a.dtype for a in args if isinstance(a, torch.Tensor) and a.dtype in _LOW_PRECISION), None)
            body = _in_float32(formula, low, keep) if float32 and low is not None else formula
            fn = compiled[kind] = torch.compile(_own_copy(body), dynamic=True, fullgraph=True,
                                                options={"cpp.dynamic_threads": True})
        try:
            # Detached: a view (rows made by movedim/reshape, x[None], ...) carries its base, and
            # Dynamo guards on the sizes of that base, so views of differently shaped tensors
            # would recompile the same kind again and again. Nothing here is recorded anyway.
            return fn(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
        except Exception as exc:  # noqa: BLE001 - the fallback must never crash: any compile failure runs the formula
            del compiled[kind]
            fallbacks.add(kind)
            reason = (str(exc).strip() or "-").splitlines()[0]
            warnings.warn(f"nnbasics.fused: compiling {formula.__name__} failed for inputs {kind} "
                          f"({type(exc).__name__}: {reason}); running the reference formula for them instead",
                          RuntimeWarning, stacklevel=2)
            return eager(*args)

    run.fallbacks, run.compiled = fallbacks, compiled
    return run
