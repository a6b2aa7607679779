"""Hardtanh's derivative as a loop in C: the fast path's one kernel written by hand.

    grad_x[i] = grad_y[i] if lo < s[i] < hi else 0        (s = the saved y; a NaN s gives 0)

Why not one of the other two ways the fast path has:

- ATen's ``hardtanh_backward`` is one vectorized pass, but not one rule at a NaN input: 0 in its
  vectorized loop, grad_y in its scalar tail (``tests/test_opinfo.py``, ``NAN_GRAD_RULE``), so the
  same NaN would get a gradient that depends on its position. The textbook's rule is 0 everywhere.
- ``torch.compile`` of the textbook's formula (``kernels.kernel``) keeps that rule, but its loop
  ran 1.07-1.13x ATen's (one 16-float vector per iteration where ATen's handles two), and with the
  forward's clamp the fused hardtanh ran 1.14-1.27x the built-in that way.

The loop below is the formula itself, which the C compiler vectorizes and unrolls
(``-O3 -funroll-loops -march=native``): ``python -m benchmarks.derivative_kernels`` times it
beside ATen's kernel and the compiled formula. It is compiled once per process, on first use,
with the system's C compiler (``$CC``, else ``cc``: torch.compile needs one on the CPU too) into a
temporary library (a fraction of a second), loaded with ``ctypes`` and called with the tensors'
addresses. It serves contiguous float32 and bfloat16 CPU tensors of one shape; everything else,
and every process where compiling fails (one warning says why), takes ``kernels.kernel``'s way.
"""
import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
import warnings

import torch

from ._torch_private import has_storage

SOURCE = r"""
#include <stdint.h>

/* out[i] = v[i] where lo < s[i] < hi, else 0: a NaN s fails both comparisons and gives 0. */
void hardtanh_derivative_times_float32(const float *restrict v, const float *restrict s, float *restrict out,
                                       int64_t n, float lo, float hi, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t i = 0; i < n; i++)
        out[i] = (s[i] > lo && s[i] < hi) ? v[i] : 0.0f;
}

/* bfloat16 is the upper half of a float32: s is compared in float32, as PyTorch compares it,
   and out takes v's bits or +0. */
void hardtanh_derivative_times_bfloat16(const uint16_t *restrict v, const uint16_t *restrict s, uint16_t *restrict out,
                                        int64_t n, float lo, float hi, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t i = 0; i < n; i++) {
        union { uint32_t bits; float value; } si = { .bits = (uint32_t)s[i] << 16 };
        out[i] = (si.value > lo && si.value < hi) ? v[i] : 0;
    }
}
"""

FLAGS = ("-O3", "-funroll-loops", "-march=native", "-fopenmp", "-shared", "-fPIC")
if platform.machine().lower() in ("x86_64", "amd64"):
    # AVX-512's 512-bit vectors lost to 256-bit ones (with AVX-512's masks) here: 1.03-1.06x ATen's
    # kernel against 0.93-0.95x (2-core AMD EPYC, float32; GCC's default width for Intel's server CPUs)
    FLAGS += ("-mprefer-vector-width=256",)
LOOPS = {torch.float32: "hardtanh_derivative_times_float32", torch.bfloat16: "hardtanh_derivative_times_bfloat16"}

_library = None  # the loaded library; False once compiling failed in this process


def _compile():
    """The library built from SOURCE and loaded, or None (with one warning) where that fails."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    with tempfile.TemporaryDirectory(prefix="nnbasics-cloop-") as folder:
        source, library = os.path.join(folder, "cloop.c"), os.path.join(folder, "cloop.so")
        with open(source, "w") as f:
            f.write(SOURCE)
        try:
            if compiler is None:
                raise OSError(f"no C compiler found (CC={os.environ.get('CC', 'cc')!r})")
            subprocess.run([compiler, *FLAGS, source, "-o", library], check=True, capture_output=True, text=True)
            return ctypes.CDLL(library)  # the file may go: the loaded library stays mapped
        except (OSError, subprocess.CalledProcessError) as exc:
            reason = getattr(exc, "stderr", None) or str(exc)
            warnings.warn(f"nnbasics.fused: compiling the C loop of hardtanh's derivative failed "
                          f"({reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__}); "
                          "the compiled formula runs instead", RuntimeWarning, stacklevel=3)
            return None


def _loaded():
    global _library
    if _library is None:
        _library = _compile() or False
    return _library or None


def serves(v, s) -> bool:
    """Whether the C loop takes these tensors: plain contiguous CPU tensors of one shape and dtype
    (float32 or bfloat16), outside autograd's recording, ``torch.func`` and ``torch.compile``."""
    return (type(v) is torch.Tensor and type(s) is torch.Tensor and v.device.type == "cpu" == s.device.type
            and v.dtype == s.dtype and v.dtype in LOOPS and v.shape == s.shape
            and v.is_contiguous() and s.is_contiguous() and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and has_storage(v) and has_storage(s)
            and _loaded() is not None)


def hardtanh_derivative_times(v, s, min_val, max_val):
    """v where min_val < s < max_val, else 0, by the C loop: call only where ``serves(v, s)``."""
    out = torch.empty_like(v)
    if v.numel():
        loop = getattr(_loaded(), LOOPS[v.dtype])
        loop(ctypes.c_void_p(v.data_ptr()), ctypes.c_void_p(s.data_ptr()), ctypes.c_void_p(out.data_ptr()),
             ctypes.c_int64(v.numel()), ctypes.c_float(min_val), ctypes.c_float(max_val),
             ctypes.c_int(torch.get_num_threads()))
    return out
