"""Which precision a training run computes in: bfloat16 autocast where the hardware multiplies
bfloat16 natively, float32 elsewhere (``--amp auto``, the default), or what the user asks for.

Under ``torch.autocast(dtype=torch.bfloat16)`` the matrix products (``linear``) run in
bfloat16 and the loss in float32, while the parameters, their gradients and the optimiser
stay float32. That is only faster where bfloat16 dot products are instructions of their own:
CPUs with AVX512-BF16 or AMX, CUDA GPUs of compute capability 8.0 (Ampere) and later. Elsewhere
bfloat16 is emulated through float32 and a step gets slower, not faster. Measurements:
docs/training.md.
"""
from __future__ import annotations

import torch

AMP_MODES = ("auto", "on", "off")


def cpu_bf16_features() -> tuple:
    """The names of this CPU's native bfloat16 matrix instructions: ('avx512_bf16', 'amx'), a part, or ().

    torch has no public query for these in 2.13 (``torch.backends.cpu.get_cpu_capability()``
    says "AVX512" with or without them), so this asks the private helpers of ``torch.cpu``
    (present since torch 2.1; checked on 2.13) and treats their absence as "none".
    """
    found = []
    for name, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx", "_is_amx_tile_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            found.append(name)
    return tuple(found)


def bf16_native(device: torch.device) -> tuple:
    """(True if ``device`` multiplies bfloat16 matrices natively, the reason in a few words)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return True, f"this GPU (compute capability {major}.{minor}) has bfloat16 tensor cores"
        return False, f"this GPU (compute capability {major}.{minor} < 8.0) has no bfloat16 tensor cores"
    if device.type == "cpu":
        features = cpu_bf16_features()
        if features:
            return True, f"this CPU has native bfloat16 dot products ({', '.join(features)})"
        return False, "this CPU has no native bfloat16 dot products (no AVX512-BF16 or AMX)"
    return False, f"bfloat16 speed on {device.type} is unknown"


def choose(amp: str, device: torch.device, dtype: str) -> tuple:
    """(autocast to bfloat16?, why) for ``--amp amp`` on ``device`` with parameters of ``dtype``.

    ``amp`` is one of AMP_MODES; a ``--dtype`` other than float32 turns ``auto`` off (it asks
    for that precision); ``on`` with such a dtype is refused earlier, by the config check.
    """
    if amp == "off":
        return False, "--amp off"
    if amp == "on":
        return True, "--amp on"
    if dtype != "float32":
        return False, f"--amp auto: --dtype {dtype} asks for {dtype} arithmetic"
    native, why = bf16_native(device)
    return native, f"--amp auto: {why}"


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device`` when ``enabled`` (a no-op context otherwise)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
