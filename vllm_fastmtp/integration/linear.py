"""The drafter's matmuls on CPU: vLLM's own prepared linear kernel where it is the faster one.

On CPU, vLLM prepacks every unquantized linear weight once (oneDNN, or its small-GEMM kernel). For a batch-1 pick
over a map's rows with cold caches (as in a draft step), `benchmarks/pick_kernel.py` measured it 1.1-1.8x faster
than torch's matmul in bf16 and ~10 % slower in fp32 (results/pick_kernel_h*.md), so an fp32 pick keeps
``F.linear``. The draft model's own small projections are another shape: there vLLM's kernel wins in fp32 too
(MiMo's input_proj 158 against 52 us, results/drafter_linear/), so `pack_plain_linears` uses it whatever the dtype.
Elsewhere (CUDA) vLLM's unquantized path is ``F.linear`` itself.
"""

from __future__ import annotations

from typing import Callable

import torch

from vllm_fastmtp.draft_vocab import plain_linear
from vllm_fastmtp.integration.version import require, require_params


class _Rows(torch.nn.Module):
    """The minimal layer vLLM's CPU GEMM dispatch prepares: a ``weight`` [N, K], no bias."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None


def draft_linear(weight: torch.Tensor, kernel: str = "auto") -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ weight.T`` for a fixed [N, K] weight, prepared once.

    ``kernel``: "auto" (vLLM's CPU kernel for bf16/fp16, ``F.linear`` otherwise), "vllm" (vLLM's CPU kernel
    whatever the dtype; the benchmark's comparison), or "torch" (``F.linear``).

    On CPU in bf16/fp16 the returned closure holds vLLM's packed copy only (the [N, K] tensor itself is not kept
    when vLLM packed it), so a map costs its rows once in memory.
    """
    from vllm.platforms import current_platform

    if kernel not in ("auto", "vllm", "torch"):
        raise ValueError(f"kernel must be 'auto', 'vllm' or 'torch', got {kernel!r}")
    plain = kernel == "torch" or (kernel == "auto" and weight.dtype == torch.float32)
    if plain or not current_platform.is_cpu():
        return plain_linear(weight)
    from vllm.model_executor.layers import utils as layer_utils

    dispatch = require(layer_utils, "dispatch_cpu_unquantized_gemm", "vllm.model_executor.layers.utils")
    require_params(dispatch, ("layer", "remove_weight"), "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm")
    layer = _Rows(weight.detach().contiguous())
    dispatch(layer, remove_weight=True)
    cpu_linear = require(layer, "cpu_linear", "dispatch_cpu_unquantized_gemm's layer")
    # vLLM's fallback path (no oneDNN) reads the weight argument; the packed paths ignore it.
    return lambda x: cpu_linear(x, layer.weight, None)


class _PackedTorchLinear(torch.nn.Module):
    """A plain ``torch.nn.Linear`` routed through vLLM's prepared CPU GEMM; same parameters, same math."""

    def __init__(self, linear: torch.nn.Linear, dispatch):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        dispatch(self, remove_weight=False)  # sets self.cpu_linear; the weight stays (shared, state dicts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cpu_linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, vLLM CPU GEMM"


def pack_plain_linears(model: torch.nn.Module) -> list[str]:
    """Route the draft model's plain ``torch.nn.Linear`` layers through vLLM's prepared CPU GEMM; CPU only.

    vLLM prepares the weights of its own linear layers at load, but a model may build a projection as a plain
    ``torch.nn.Linear`` (MiMo's and DeepSeek's MTP ``input_proj``/``eh_proj``), which then runs torch's unprepared
    fp32 GEMM once per draft step: in a SmolLM2 engine 158 us a call against ~52 us for vLLM's kernel on the same
    shape. Returns the qualified names of the layers it replaced (none off CPU, where vLLM's own path is
    ``F.linear`` anyway).
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return []
    from vllm.model_executor.layers import utils as layer_utils

    dispatch = require(layer_utils, "dispatch_cpu_unquantized_gemm", "vllm.model_executor.layers.utils")
    require_params(dispatch, ("layer", "remove_weight"), "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm")
    names = [name for name, m in model.named_modules() if type(m) is torch.nn.Linear]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, _PackedTorchLinear(getattr(parent, child), dispatch))
    return names
