"""The drafter's matmuls on CPU: vLLM's own prepared linear kernel where it is the faster one.

On CPU, vLLM prepacks every unquantized linear weight once (oneDNN, or its small-GEMM kernel). For a batch-1 pick
over a map's rows with cold caches (as in a draft step), `benchmarks/pick_kernel.py` measured it 1.1-1.8x faster
than torch's matmul in bf16 on every CPU tried. In fp32 the answer depends on the CPU: ~20 % slower at batch 1 on
an AVX-512 EPYC, 1.45x faster at batch 1 and 2.5-3.5x faster at batch 4-16 on an AVX2-only EPYC
(results/pick_kernel_h*.md, results/pick_kernel_avx2/), so for fp32 rows "auto" times both kernels on the map's
own rows when the drafter loads and keeps the faster (`pick_faster`). The draft model's own small projections are
another shape: there vLLM's kernel wins in fp32 too (MiMo's input_proj 158 against 52 us,
results/drafter_linear/), so `pack_plain_linears` uses it whatever the dtype. Elsewhere (CUDA) vLLM's unquantized
path is ``F.linear`` itself.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Mapping

import torch

from vllm_fastmtp.draft_vocab import PICK_KERNELS, plain_linear
from vllm_fastmtp.integration.version import require, require_params


class _Rows(torch.nn.Module):
    """The minimal layer vLLM's CPU GEMM dispatch prepares: a ``weight`` [N, K], no bias."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None


# batch sizes "auto" times an fp32 pick at: a lone request, and a loaded engine's decode batch
CALIBRATION_BATCHES = (1, 8)
# "auto"'s choice per (rows, columns, dtype), once a process: a GEMM's speed depends on its shape, not its values,
# so two maps of one size (en-8k, zh-8k) take the same kernel and the second costs no timing
_PICKED: dict[tuple[int, int, torch.dtype], str] = {}


def draft_linear(weight: torch.Tensor, kernel: str = "auto") -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ weight.T`` for a fixed [N, K] weight, prepared once; the returned callable's ``kernel``
    attribute names the kernel it runs ("vllm" or "torch").

    ``kernel``: "auto" (vLLM's CPU kernel for bf16/fp16; for fp32 whichever of the two `pick_faster` measures
    faster on this CPU, timed once per shape), "vllm" (vLLM's CPU kernel whatever the dtype), or "torch"
    (``F.linear``).

    On CPU the returned closure holds only the copy its kernel reads (vLLM's packed copy, or the [N, K] tensor),
    so a map costs its rows once in memory.
    """
    from vllm.platforms import current_platform

    if kernel not in PICK_KERNELS:
        raise ValueError(f"kernel must be one of {PICK_KERNELS}, got {kernel!r}")
    if not current_platform.is_cpu():
        kernel = "torch"
    elif kernel == "auto" and weight.dtype == torch.float32:
        key = (weight.shape[0], weight.shape[1], weight.dtype)
        if key not in _PICKED:
            candidates = {"torch": plain_linear(weight), "vllm": _vllm_cpu_linear(weight)}
            _PICKED[key] = pick_faster(_time_kernels(candidates, weight.shape[1], weight.dtype))
            return _named(candidates[_PICKED[key]], _PICKED[key])
        kernel = _PICKED[key]  # timed for an earlier map of this shape: only the kept kernel is prepared
    if kernel == "torch":
        return _named(plain_linear(weight), "torch")
    return _named(_vllm_cpu_linear(weight), "vllm")


def _named(fn: Callable[[torch.Tensor], torch.Tensor], kernel: str) -> Callable[[torch.Tensor], torch.Tensor]:
    fn.kernel = kernel
    return fn


def _vllm_cpu_linear(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """vLLM's prepared CPU GEMM for ``weight`` (its packed copy; the layer's own tensor is dropped)."""
    from vllm.model_executor.layers import utils as layer_utils

    dispatch = require(layer_utils, "dispatch_cpu_unquantized_gemm", "vllm.model_executor.layers.utils")
    require_params(dispatch, ("layer", "remove_weight"), "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm")
    layer = _Rows(weight.detach().contiguous())
    dispatch(layer, remove_weight=True)
    cpu_linear = require(layer, "cpu_linear", "dispatch_cpu_unquantized_gemm's layer")
    # vLLM's fallback path (no oneDNN) reads the weight argument; the packed paths ignore it.
    return lambda x: cpu_linear(x, layer.weight, None)


def _time_kernels(candidates: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], in_features: int,
                  dtype: torch.dtype, batches: tuple[int, ...] = CALIBRATION_BATCHES, reps: int = 5,
                  flush_mb: int = 64) -> dict[str, dict[int, float]]:
    """Median seconds per call of each kernel at each batch size, interleaved, with the CPU caches flushed before
    every call: inside the engine the target's forward has evicted the map's rows by the time the drafter runs.
    About 0.2 s for an 8k x 576 map."""
    flush = torch.empty(flush_mb * 2**20 // 4)
    g = torch.Generator().manual_seed(0)  # not the global generator: the engine's sampling seeds stay as they were
    xs = {m: torch.randn(m, in_features, generator=g).to(dtype) for m in batches}
    with torch.inference_mode():
        for f in candidates.values():  # first calls allocate and set up
            for x in xs.values():
                f(x)
    times: dict[str, dict[int, list[float]]] = {name: {m: [] for m in batches} for name in candidates}
    with torch.inference_mode():
        for _ in range(reps):
            for m, x in xs.items():
                for name, f in candidates.items():
                    flush.fill_(1.0)
                    t0 = time.perf_counter()
                    f(x)
                    times[name][m].append(time.perf_counter() - t0)
    return {name: {m: statistics.median(v) for m, v in per.items()} for name, per in times.items()}


def pick_faster(medians: Mapping[str, Mapping[int, float]]) -> str:
    """The kernel with the lowest geometric mean of its time over the batch sizes measured (every batch size
    weighs the same, whatever its absolute cost); ties keep the first listed."""
    def score(name: str) -> float:
        per = medians[name]
        return math.exp(sum(math.log(max(t, 1e-9)) for t in per.values()) / len(per))

    return min(medians, key=score)


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
