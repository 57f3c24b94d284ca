"""Model Runner V2 (v1/worker/gpu/, GPU only): fastmtp is not implemented there, so its speculator factory refuses
a fastmtp config with the reason instead of building vanilla MTP silently. `config.select_v1_runner` picks the V1
runner for fastmtp unless the user forced V2.
"""

from __future__ import annotations

from typing import Callable

from vllm_fastmtp.integration.config import fastmtp_options
from vllm_fastmtp.options import FastMTPConfigError


def refuse_v2(init_speculator: Callable) -> Callable:
    if getattr(init_speculator, "_fastmtp", False):
        return init_speculator

    def guarded(vllm_config, *args, **kwargs):
        if fastmtp_options(vllm_config) is not None:
            raise FastMTPConfigError(
                "method 'fastmtp' is not implemented for vLLM's Model Runner V2 (v1/worker/gpu/spec_decode: its "
                "MTPSpeculator runs draft steps inside full CUDA graphs and needs static per-request map buffers). "
                "Unset VLLM_USE_V2_MODEL_RUNNER (or set it to 0) to use the V1 runner, which fastmtp supports."
            )
        return init_speculator(vllm_config, *args, **kwargs)

    guarded._fastmtp = True
    guarded.__wrapped__ = init_speculator
    return guarded


def patch_v2_factory(module) -> None:
    if hasattr(module, "init_speculator"):
        module.init_speculator = refuse_v2(module.init_speculator)
