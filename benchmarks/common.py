"""Measuring instruments shared by the benchmarks.

- ``time_alternately``: time several callables in alternating rounds (A, B, A, B, ...) and
  keep the median of each, so that a noisy, shared machine slows all of them alike and
  their *ratio* survives;
- ``saved_tensor_bytes``: what autograd keeps alive for backward
  (``torch.autograd.graph.saved_tensors_hooks``);
- ``peak_memory_bytes``: the CUDA allocator's high-water mark during a call;
- ``DEVICE_PEAKS`` / ``device_peak``: datasheet peaks, to turn GB/s and TFLOP/s into a share;
- ``environment``: the header every results file carries (device, versions, threads, command).
"""
import datetime
import functools
import os
import platform
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.benchmark

from nnbasics.train import allocator

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- devices

def cuda_usable() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def cuda_missing(device: str, program: str) -> bool:
    """True, after saying so on stderr, when ``device`` is "cuda" and CUDA cannot be used here."""
    if device == "cuda" and not cuda_usable():
        print(f"--device cuda: CUDA is not available on this machine (torch {torch.__version__}); "
              f"use --device cpu ({program})", file=sys.stderr)
        return True
    return False


def device_name(device: torch.device) -> str:
    """The marketing name of the device: 'NVIDIA H100 80GB HBM3', or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Datasheet peaks (dense, no sparsity), keyed by a substring of the device name; the first
# match wins, so the specific names come first. float32 matmuls count at the plain FP32 rate
# unless TF32 is switched on (torch.backends.cuda.matmul.allow_tf32, off by default).
DEVICE_PEAKS = [
    # (name contains, bytes/s of main memory, {dtype or "tf32": FLOP/s})
    ("H200", 4.8e12, {torch.bfloat16: 989e12, torch.float16: 989e12, "tf32": 494.5e12, torch.float32: 67e12}),
    ("H100 PCIe", 2.0e12, {torch.bfloat16: 756e12, torch.float16: 756e12, "tf32": 378e12, torch.float32: 51e12}),
    ("H100", 3.35e12, {torch.bfloat16: 989e12, torch.float16: 989e12, "tf32": 494.5e12, torch.float32: 67e12}),
]


def device_peak(name: str, dtype: torch.dtype, unit: str):
    """Peak bytes/s (unit 'GB/s') or matmul FLOP/s (unit 'TFLOP/s') of the named device; None if unknown (CPUs)."""
    for key, bandwidth, flops in DEVICE_PEAKS:
        if key in name:
            if unit == "GB/s":
                return bandwidth
            tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
            return flops.get("tf32" if tf32 else dtype)
    return None


# --------------------------------------------------------------------------- timing

@functools.lru_cache(maxsize=1)
def _triton_do_bench():
    """``triton.testing.do_bench``, or None when triton is missing or broken (any exception)."""
    try:
        from triton.testing import do_bench

        return do_bench
    except Exception:  # noqa: BLE001 - an unusable triton just means the fallback timer
        return None


def timer_name(device: torch.device) -> str:
    if device.type == "cuda" and _triton_do_bench() is not None:
        return "triton.testing.do_bench (median)"
    return "torch.utils.benchmark.Timer.blocked_autorange (median)"


def _measure_once(fn, device: torch.device, min_run_time: float, slow: bool) -> list:
    """Seconds per call of ``fn()``, one number per timed block."""
    do_bench = _triton_do_bench() if device.type == "cuda" else None
    if do_bench is not None:
        # do_bench synchronizes, flushes L2 between calls and returns milliseconds.
        ms = do_bench(fn, warmup=max(1, int(min_run_time * 250)), rep=max(1, int(min_run_time * 1000)), return_mode="median")
        return [ms / 1e3]
    # Timer synchronizes CUDA itself; num_threads pins the thread count it measures with.
    timer = torch.utils.benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    if slow:  # one call outlasts min_run_time: blocked_autorange would spend a call just to pick blocks of 1
        return list(timer.timeit(1).times)
    return list(timer.blocked_autorange(min_run_time=min_run_time).times)


def time_alternately(fns: dict, device: torch.device, rounds: int = 3, min_run_time: float = 0.1) -> dict:
    """Median seconds per call of each ``fns[name]()``, measured in alternating rounds.

    Round r measures every callable once, starting from a different one each round
    (A B C, B C A, C A B, ...), so no callable always runs first or right after another.
    The median over all timed blocks of all rounds is kept: a burst of load from other
    processes hits both sides of a comparison and is outvoted. The first round's
    ``blocked_autorange`` also warms up (allocator, caches, compilation).
    """
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            slow = bool(times[name]) and statistics.median(times[name]) >= min_run_time
            times[name] += _measure_once(fns[name], device, min_run_time, slow)
    return {name: statistics.median(ts) for name, ts in times.items()}


# --------------------------------------------------------------------------- memory

@dataclass
class SavedBytes:
    """Bytes autograd saved for backward during one forward.

    total:     Σ over every pack call of numel · element_size (bool: 1 byte per element);
               a tensor saved twice counts twice.
    unique:    Σ over the distinct storages those tensors live in, of the storage's size:
               what the saved tensors actually keep alive (views of one buffer count once).
    new:       ``unique`` without the storages of the inputs, which the caller holds anyway:
               the memory that exists only because backward will need it.
    new_total: ``total`` without the tensors that live in the inputs' storages.
    """

    total: int
    unique: int
    new: int
    new_total: int


def saved_tensor_bytes(run, inputs=()) -> SavedBytes:
    """Run ``run()`` (a forward) and count what it saves for backward; ``inputs``: the caller's tensors
    (the batch, and for a model its parameters)."""
    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in packed}
    input_ptrs = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
    return SavedBytes(
        total=sum(t.numel() * t.element_size() for t in packed),
        unique=sum(storages.values()),
        new=sum(nbytes for ptr, nbytes in storages.items() if ptr not in input_ptrs),
        new_total=sum(t.numel() * t.element_size() for t in packed if t.untyped_storage().data_ptr() not in input_ptrs),
    )


def peak_memory_bytes(run, device: torch.device):
    """Peak CUDA memory allocated while ``run()`` executes, above what was allocated before
    (so the inputs, already allocated, are not counted). None off CUDA, where PyTorch keeps no such count.

    ``run()`` is called once first, so one-time allocations (the cuBLAS workspace, compiled
    kernels' buffers) are not charged to whichever implementation happens to run first.
    """
    if device.type != "cuda":
        return None
    run()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


# --------------------------------------------------------------------------- run header

def git_commit():
    """The checked-out commit, marked '+dirty' when tracked files differ from it; None outside git."""
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def load_average():
    """The 1-minute load average before the run (None where the OS does not say): other jobs' share of the CPUs."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def busy_warning(threads: int):
    """A warning when other jobs already keep the CPUs busy, else None.

    Torch's CPU threads meet at a barrier after every parallel op; when another job
    holds the cores, each barrier waits for a descheduled thread's next time slice
    (milliseconds), and a 10 µs op measures as 8 ms. One thread has no barrier.
    """
    load = load_average()
    if load is not None and threads > 1 and load >= (os.cpu_count() or 1) - 0.5:
        return (f"the machine is busy (load average {load} on {os.cpu_count()} CPUs): timings with "
                f"{threads} threads will include waits for time slices; rerun when idle, or with --threads 1")
    return None


def environment(device: torch.device, dtype: torch.dtype, program: str, argv) -> dict:
    """Everything needed to read (and rerun) a results file."""
    return {
        "device": device.type,
        "device_name": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "allocator": allocator.status(),
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "timer": timer_name(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([program, shlex.join(argv)]).strip(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
    }
