"""The pruned draft head's matmul through the kernel vLLM uses for its own linear layers on this platform.

On CPU, vLLM prepacks every unquantized linear weight once (oneDNN, or its small-GEMM kernel) and its lm_head
runs at memory speed; a plain torch matmul over a map's rows ran ~2.5x slower per byte inside the engine
(benchmarks/results/step_profile/). Elsewhere (CUDA) vLLM's unquantized path is ``F.linear`` itself.
"""

from __future__ import annotations

from typing import Callable

import torch

from vllm_fastmtp.integration.version import require, require_params


class _Rows(torch.nn.Module):
    """The minimal layer vLLM's CPU GEMM dispatch prepares: a ``weight`` [N, K], no bias."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None


def draft_linear(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ weight.T`` for a fixed [N, K] weight, prepared once the way vLLM prepares its layers.

    On CPU the returned closure holds vLLM's packed copy only (the [N, K] tensor itself is not kept when vLLM
    packed it), so a map costs its rows once in memory.
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return lambda x: torch.nn.functional.linear(x, weight)
    from vllm.model_executor.layers import utils as layer_utils

    dispatch = require(layer_utils, "dispatch_cpu_unquantized_gemm", "vllm.model_executor.layers.utils")
    require_params(dispatch, ("layer", "remove_weight"), "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm")
    layer = _Rows(weight.detach().contiguous())
    dispatch(layer, remove_weight=True)
    cpu_linear = require(layer, "cpu_linear", "dispatch_cpu_unquantized_gemm's layer")
    # vLLM's fallback path (no oneDNN) reads the weight argument; the packed paths ignore it.
    return lambda x: cpu_linear(x, layer.weight, None)
