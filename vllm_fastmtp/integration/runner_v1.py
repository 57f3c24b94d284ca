"""V1 model runner (v1/worker/gpu_model_runner.py, also used by the CPU runner): its `EagleProposer` symbol is
replaced by `FastMTPProposer`, which behaves exactly like its parent unless the engine config is fastmtp."""

from __future__ import annotations

from vllm_fastmtp.integration.version import require, require_params


def patch_v1_runner(module) -> None:
    """Check the proposer internals FastMTPProposer overrides, then swap it in (idempotent)."""
    base = require(module, "EagleProposer", module.__name__)
    if getattr(base, "_fastmtp_subclass", False):
        return
    for name in ("propose", "load_model", "_greedy_sample", "prepare_next_token_ids_padded",
                 "prepare_next_token_ids_cpu"):
        require(base, name, "EagleProposer")
    require_params(base.propose, ("target_hidden_states", "common_attn_metadata"), "EagleProposer.propose")
    require_params(base.__init__, ("vllm_config", "device", "runner"), "EagleProposer.__init__")
    from vllm_fastmtp.integration.proposer import FastMTPProposer

    module.EagleProposer = FastMTPProposer
