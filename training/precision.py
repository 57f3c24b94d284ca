"""Which float format training may use on this machine: bf16 autocast where the hardware computes it natively
(`vllm_fastmtp.precision.bf16_native`, shared with the drafter)."""

from __future__ import annotations

import torch

from vllm_fastmtp.precision import bf16_native, resolve_dtype

__all__ = ["autocast", "bf16_native", "resolve_dtype"]


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when enabled, a no-op context otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
