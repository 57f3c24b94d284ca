"""What a pruned draft vocabulary saves per draft step, at MiMo-7B's shapes, on this CPU.

    python -m benchmarks.draft_vocab_cost [--reps 15] [--dtype auto|bf16|fp32] [--context 512]

(a) the lm_head alone: full vocabulary (151,680 rows) vs 8k/16k/32k maps (``PrunedDraftHead.argmax``);
(b) the whole greedy draft step: the project's MTP head module (``training.mtp_head.MTPHead`` built from a
MiMo-7B config: norms, input_proj 8192->4096, transformers' Qwen2 decoder layer with 32/8 heads of 128 and MLP
11008, attention over a fixed ``--context`` of cached keys/values) + the pruned lm_head.
Batch 1, one decode token. Variants are interleaved within each repetition (shuffled order) and medians
reported, so drifting load on a shared machine hits all variants alike. Weights are random: only shapes
matter for time. The token embedding lookup is omitted (one row copy).
Writes benchmarks/results/draft_vocab_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from training.mtp_head import MTPHead
from vllm_fastmtp.draft_vocab import PrunedDraftHead

MAP_SIZES = {"8k": 8192, "16k": 16384, "32k": 32768}


@dataclass(frozen=True)
class Shape:
    """The model config fields the draft step's cost depends on; defaults: MiMo-7B's config.json."""

    vocab: int = 151680
    hidden: int = 4096
    intermediate: int = 11008
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 640000.0
    rms_norm_eps: float = 1e-5
    max_positions: int = 32768


MIMO_7B = Shape()
RESULTS = Path(__file__).parent / "results"


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_config(shape: Shape):
    """The main model's config at ``shape``: what ``training.mtp_head.MTPHead`` is built from."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        rope_theta=shape.rope_theta, rms_norm_eps=shape.rms_norm_eps, max_position_embeddings=shape.max_positions,
    )


class MTPModule(nn.Module):
    """The project's MTP head (``training.mtp_head.MTPHead``: norms, input_proj, transformers' Qwen2 decoder
    layer, final norm) drafting one token whose attention reads a fixed-length KV cache of ``context`` tokens."""

    def __init__(self, context: int, shape: Shape = MIMO_7B):
        super().__init__()
        self.head = MTPHead(model_config(shape))
        self.context = context
        self.register_buffer("k_cache", torch.randn(1, shape.kv_heads, context, shape.head_dim) * 0.1)
        self.register_buffer("v_cache", torch.randn(1, shape.kv_heads, context, shape.head_dim) * 0.1)
        self.register_buffer("position_ids", torch.tensor([[context]]), persistent=False)

    def forward(self, hidden: torch.Tensor, tok_emb: torch.Tensor) -> torch.Tensor:
        """[1, H] hidden state + [1, H] token embedding -> [1, H] (post final norm), one decode token."""
        cache = DynamicCache()  # a fresh view of the same cached K/V each call: the context does not grow
        cache.update(self.k_cache, self.v_cache, 0)
        return self.head(hidden[:, None], tok_emb[:, None], self.position_ids, past_key_values=cache)[:, 0]


def _init_(module: nn.Module, g: torch.Generator) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            p.data.normal_(0.0, 0.02, generator=g)


def run(reps: int, dtype_name: str, context: int, seed: int = 0, shape: Shape = MIMO_7B,
        map_sizes: dict[str, int] = MAP_SIZES) -> dict:
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    g = torch.Generator().manual_seed(seed)
    # Draw in chunks straight into the target dtype: a 151680x4096 fp32 temporary would double peak memory for bf16.
    lm_head = torch.empty(shape.vocab, shape.hidden, dtype=dtype)
    for i in range(0, shape.vocab, 8192):
        lm_head[i : i + 8192] = torch.empty(min(8192, shape.vocab - i), shape.hidden).normal_(0.0, 0.02, generator=g)
    maps = {name: torch.randperm(shape.vocab, generator=g)[:n] for name, n in map_sizes.items()}
    maps["full"] = None
    head = PrunedDraftHead(lm_head, maps)
    mtp = MTPModule(context, shape)
    _init_(mtp, g)
    mtp = mtp.to(dtype).eval()
    hidden = torch.randn(1, shape.hidden, generator=g).to(dtype)
    emb = torch.randn(1, shape.hidden, generator=g).to(dtype)
    variants = ["full", *map_sizes]

    def head_only(lang):
        return head.argmax(hidden, [lang])

    def step(lang):
        return head.argmax(mtp(hidden, emb), [lang])

    def mtp_only(_):
        return mtp(hidden, emb)

    jobs = [("head", v, head_only) for v in variants] + [("step", v, step) for v in variants]
    jobs.append(("mtp", "-", mtp_only))
    times: dict[tuple[str, str], list[float]] = {(k, v): [] for k, v, _ in jobs}
    rng = random.Random(seed)
    with torch.inference_mode():
        for _ in range(2):  # warm-up
            for _k, v, fn in jobs:
                fn(v)
        for _ in range(reps):
            order = jobs[:]
            rng.shuffle(order)
            for k, v, fn in order:
                t0 = time.perf_counter()
                fn(v)
                times[(k, v)].append(time.perf_counter() - t0)
    med = {f"{k}/{v}": statistics.median(ts) * 1e3 for (k, v), ts in times.items()}
    out = {
        "config": {
            **asdict(shape), "map_sizes": dict(map_sizes), "context": context, "batch": 1, "dtype": dtype_name, "reps": reps,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_bf16": cpu_has_bf16(),
        },
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "head_speedup_vs_full": {v: round(med["head/full"] / med[f"head/{v}"], 3) for v in map_sizes},
        "step_speedup_vs_full": {v: round(med["step/full"] / med[f"step/{v}"], 3) for v in map_sizes},
        "head_share_of_full_step": round(med["head/full"] / med["step/full"], 3),
        "raw_ms": {f"{k}/{v}": [round(t * 1e3, 3) for t in ts] for (k, v), ts in times.items()},
    }
    return out


def to_markdown(r: dict) -> str:
    c, m = r["config"], r["median_ms"]
    lines = [
        "# Draft-step cost with a pruned draft vocabulary (CPU)",
        "",
        f"`python -m benchmarks.draft_vocab_cost --reps {c['reps']} --dtype {c['dtype']} --context {c['context']}` — "
        f"MiMo-7B shapes (vocab {c['vocab']}, hidden {c['hidden']}, MLP {c['intermediate']}, {c['heads']}/{c['kv_heads']} heads "
        f"x {c['head_dim']}), batch 1, KV context {c['context']}, dtype {c['dtype']} (CPU bf16 support: {c['cpu_bf16']}), "
        f"{c['torch_threads']} torch threads, torch {c['torch']}. Medians of {c['reps']} interleaved repetitions."
        + (f" Machine load (1-min average, before/after): {c['load_avg_1min'][0]}/{c['load_avg_1min'][1]} "
           f"on {c['cpu_count']} cores: absolute times are inflated by other processes; the ratios, measured "
           "side by side, are the result." if "load_avg_1min" in c else ""),
        "",
        "| vocabulary | lm_head + argmax (ms) | head speed-up | MTP module + head (ms) | draft-step speed-up |",
        "| --- | --- | --- | --- | --- |",
        f"| full ({c['vocab']:,}) | {m['head/full']:.2f} | 1.00x | {m['step/full']:.2f} | 1.00x |",
    ]
    for v, n in c["map_sizes"].items():
        lines.append(
            f"| {v} ({n:,}) | {m[f'head/{v}']:.2f} | {r['head_speedup_vs_full'][v]:.2f}x | "
            f"{m[f'step/{v}']:.2f} | {r['step_speedup_vs_full'][v]:.2f}x |"
        )
    lines += [
        "",
        f"MTP module alone: {m['mtp/-']:.2f} ms. The full-vocabulary head is {r['head_share_of_full_step']:.0%} of a full draft step.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.draft_vocab_cost", description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 if the CPU has bf16 instructions")
    p.add_argument("--context", type=int, default=512, help="cached tokens the MTP attention reads")
    p.add_argument("--out-dir", default=str(RESULTS))
    a = p.parse_args(argv)
    dtype = a.dtype if a.dtype != "auto" else ("bf16" if cpu_has_bf16() else "fp32")
    t0 = time.time()
    load_before = os.getloadavg()[0]
    r = run(a.reps, dtype, a.context)
    r["config"]["wall_s"] = round(time.time() - t0, 1)
    # Other processes share the cores: the 1-minute load says how busy the machine was around the run.
    r["config"]["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    r["config"]["cpu_count"] = os.cpu_count()
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "draft_vocab_cost.json").write_text(json.dumps(r, indent=2) + "\n")
    md = to_markdown(r)
    (out / "draft_vocab_cost.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
