"""Ad-hoc (README, "Noticed"): a plain engine's decode with vLLM's native norms/activation vs the C kernels
everywhere. Run from the repository root: VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_CPU_KVCACHE_SPACE=4 python THIS native|c"""
import os, sys, time
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
import torch
mode = sys.argv[1]
if mode == "c":
    from vllm.platforms import current_platform
    current_platform.import_kernels()
    from vllm.model_executor.layers.layernorm import RMSNorm
    from vllm.model_executor.layers.activation import SiluAndMul
    def norm(self, x, residual=None):
        w = self.weight.data
        if residual is None:
            out = torch.empty_like(x); torch.ops._C.rms_norm(out, x.contiguous(), w, self.variance_epsilon); return out
        torch.ops._C.fused_add_rms_norm(x, residual, w, self.variance_epsilon); return x, residual
    def act(self, x):
        out = torch.empty(x.shape[:-1] + (x.shape[-1] // 2,), dtype=x.dtype); torch.ops._C.silu_and_mul(out, x); return out
    RMSNorm.forward_native = norm; SiluAndMul.forward_native = act
from vllm import LLM, SamplingParams
llm = LLM("runs/pipeline/ft/final", dtype="float32", enforce_eager=True, max_model_len=2048, seed=0)
sp = SamplingParams(temperature=0, max_tokens=128, ignore_eos=True)
prompts = ["Write a short story about a robot learning to paint.", "Explain how a hash map works.", "What is 17 times 23?"]
llm.generate(prompts[:1], SamplingParams(temperature=0, max_tokens=8))
t = time.perf_counter(); outs = [llm.generate([p], sp)[0] for p in prompts]; dt = time.perf_counter() - t
n = sum(len(o.outputs[0].token_ids) for o in outs)
print(f"RESULT {mode}: {n} tokens in {dt:.2f} s = {1000 * dt / n:.1f} ms/token; first ids {outs[0].outputs[0].token_ids[:12]}")
