"""Keeping freed memory in the process, for a training loop that allocates the same tensors every step.

PyTorch's CPU tensors come from the C library's ``malloc``, and PyTorch keeps no cache of
its own on the CPU (it does on CUDA). With glibc's default settings, large freed blocks go
back to the operating system (a block with a mapping of its own is unmapped, free memory at
the top of the heap is trimmed), and the next step's tensor of the same size is fresh memory
whose every 4 KiB page faults, and is zeroed by the kernel, on first touch. A training step frees
and allocates its activations, gradients and bfloat16 weight copies every time, so each step
pays those faults again.

``keep_freed_memory`` raises glibc's two thresholds with ``mallopt``, so that freed blocks stay
in the process and the next step reuses them. The price is that the memory of the step's peak
stays with the process until it ends, which a training run holds anyway. The faults and the
time per step, with and without it, and the command that measures them: "Page faults in the
training step" in benchmarks/results/README.md. It changes nothing where it cannot apply: another C library (macOS, musl), another
allocator loaded with ``LD_PRELOAD`` (jemalloc and tcmalloc cache freed memory themselves), or
a user who set glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` variables.
"""
import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap, not from a mapping of their own: glibc's own upper
limit for its sliding threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems)."""
TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap is given back only beyond this."""
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_state = {"applied": None}


def keep_freed_memory() -> tuple:
    """(applied, why): raise glibc's thresholds for this process, once; later calls return the first answer."""
    if _state["applied"] is None:
        _state["applied"] = _apply()
    return _state["applied"]


def status() -> str:
    """What this process's malloc does with freed memory, in words (for a results file)."""
    if _state["applied"] is None:
        return "the C library's defaults (keep_freed_memory not called)"
    applied, why = _state["applied"]
    return why if applied else f"the C library's defaults ({why})"


def _apply() -> tuple:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False, f"not glibc ({platform.system()} {'-'.join(platform.libc_ver()) or 'unknown C library'})"
    preload = os.environ.get("LD_PRELOAD", "")
    if preload:
        return False, f"LD_PRELOAD={preload} (another allocator keeps its own cache)"
    user = [name for name in _USER_SETTINGS if name in os.environ]
    if user:
        return False, f"{', '.join(user)} set by the user"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return False, "glibc's mallopt refused the thresholds"
    return True, f"glibc keeps freed blocks below {MMAP_THRESHOLD >> 20} MiB (mallopt)"
