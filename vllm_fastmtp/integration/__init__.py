"""The integration layer: the only code that touches vLLM internals, each checked against the installed vLLM.

One job per module:

* `version`: the supported range and the `require` checks every internal goes through.
* `import_hook`: patch worker modules when a process imports them, not before.
* `config`: "fastmtp" in `SpeculativeConfig` / `EngineArgs.create_speculative_config`, validated up front.
* `runner_v1` + `proposer`: the V1 runner drafts with `FastMTPProposer`.
* `linear`: the pruned draft head's matmul (vLLM's prepacked CPU kernel where it is faster).
* `runner_v2`: Model Runner V2 refuses fastmtp with the reason.
* `cpu_fixes`: the CPU build's sampling fix and engine workarounds.
* `sampling`: sort-free top-k/top-p (a v1 logits processor) for batch generation in `training.distill`.
* `cli_shim`: vLLM's CLI on both distributions.
"""

from __future__ import annotations

from vllm_fastmtp.integration.config import logger, patch_engine_args, patch_speculative_config
from vllm_fastmtp.integration.cpu_fixes import fix_cpu_expand
from vllm_fastmtp.integration.import_hook import after_import
from vllm_fastmtp.integration.runner_v1 import patch_v1_runner
from vllm_fastmtp.integration.runner_v2 import patch_v2_factory
from vllm_fastmtp.integration.version import UnsupportedVLLMError, check_vllm_version, installed_vllm_version

_INSTALLED = False


def install() -> None:
    """Patch vLLM for method "fastmtp" (idempotent; called by vLLM's plugin loader in every process)."""
    global _INSTALLED
    if _INSTALLED:
        return
    version = installed_vllm_version()
    try:
        check_vllm_version(version)
    except UnsupportedVLLMError as e:
        # Still teach vLLM the method name, so a fastmtp request fails with this message, not a Literal error.
        logger.warning("%s", e)
    patch_speculative_config(version)
    patch_engine_args(version)
    after_import("vllm.v1.worker.gpu_model_runner", patch_v1_runner)
    after_import("vllm.v1.worker.gpu.spec_decode", patch_v2_factory)
    after_import("vllm.v1.worker.gpu.model_runner", patch_v2_factory)
    after_import("vllm.v1.sample.rejection_sampler", fix_cpu_expand)
    _INSTALLED = True
