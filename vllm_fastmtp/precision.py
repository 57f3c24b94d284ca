"""Whether a device computes bf16 matmuls natively: where it does, bf16 is the cheaper format to read and multiply.

On CPUs without native bf16 (no AVX-512 BF16 / AMX), bf16 matmuls are emulated and slower than fp32, so the
answer is per machine, not per device type. Used by the drafter (the pruned pick's format) and by training
(autocast); imports no vLLM.
"""

from __future__ import annotations

import torch


def bf16_native(device: torch.device | str | None = None) -> bool:
    """True when ``device`` (default: CUDA if present, else CPU) runs bf16 matmuls natively."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_dtype(name: str | None, device: torch.device | str | None = None) -> str | None:
    """A generation job's ``--dtype`` for vLLM: "native" becomes "bfloat16" where ``device`` computes it natively,
    else "float32"; any other value (None included) passes through unchanged.

    For generation jobs (distillation, self-written prompts): on a CPU without AVX-512 BF16 / AMX, vLLM's bf16
    matmuls are emulated and slower than fp32, so asking for bf16 there costs speed and buys nothing.
    """
    if name != "native":
        return name
    return "bfloat16" if bf16_native(device) else "float32"
