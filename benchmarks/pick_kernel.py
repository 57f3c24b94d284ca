"""The pruned draft head's pick (logits over a map's rows + argmax): plain torch matmul vs vLLM's prepared kernel.

One batch-1 pick per call, as a draft step makes, with the CPU caches flushed before each call (inside the engine
the target model's forward has evicted the map's rows by the time the drafter runs). Both kernels and every
dtype/map size are timed interleaved in one run. Writes benchmarks/results/pick_kernel_h{HIDDEN}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from vllm_fastmtp.draft_vocab import PrunedDraftHead

RESULTS = Path(__file__).parent / "results"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def run(hidden: int, map_sizes: list[int], dtypes: list[str], reps: int, flush_mb: int = 256, seed: int = 0) -> dict:
    from vllm_fastmtp.integration.linear import draft_linear

    g = torch.Generator().manual_seed(seed)
    flush = torch.zeros(flush_mb * 2**20 // 4)
    jobs = []
    for dt in dtypes:
        for n in map_sizes:
            rows = torch.randn(n, hidden, generator=g).to(DTYPES[dt])
            ids = {"m": torch.arange(n)}
            h = torch.randn(1, hidden, generator=g).to(DTYPES[dt])
            for kernel in ("torch", "vllm"):
                head = PrunedDraftHead(rows, ids, linear=lambda w, k=kernel: draft_linear(w, kernel=k))
                jobs.append((f"{dt}/{n}/{kernel}", head, h))
    times: dict[str, list[float]] = {name: [] for name, _, _ in jobs}
    rng = random.Random(seed)
    with torch.inference_mode():
        for name, head, h in jobs:  # warm-up
            head.argmax(h, ["m"])
        for _ in range(reps):
            order = jobs[:]
            rng.shuffle(order)
            for name, head, h in order:
                flush.add_(1.0)
                t0 = time.perf_counter()
                head.argmax(h, ["m"])
                times[name].append((time.perf_counter() - t0) * 1e3)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "hidden": hidden, "map_sizes": map_sizes, "dtypes": dtypes, "reps": reps, "flush_mb": flush_mb,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "median_ms": median, "raw_ms": times,
    }


def to_markdown(r: dict) -> str:
    lines = [
        "# Pruned draft pick: plain torch matmul vs vLLM's prepared kernel (CPU)", "",
        f"`python -m benchmarks.pick_kernel` — batch 1, hidden {r['hidden']}, caches flushed ({r['flush_mb']} MB) "
        f"before every call, medians of {r['reps']} interleaved repetitions, {r['threads']} torch threads, "
        f"torch {r['torch']}.", "",
        "| dtype | map rows | torch matmul (ms) | vLLM kernel (ms) | speed-up | GB/s (vLLM) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dt in r["dtypes"]:
        for n in r["map_sizes"]:
            a, b = r["median_ms"][f"{dt}/{n}/torch"], r["median_ms"][f"{dt}/{n}/vllm"]
            gb = n * r["hidden"] * DTYPES[dt].itemsize / 1e9
            lines.append(f"| {dt} | {n:,} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {gb / (b / 1e3):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pick_kernel", description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=576, help="hidden size (576: the demo model; 4096: MiMo-7B)")
    p.add_argument("--map-sizes", type=int, nargs="+", default=[8192, 16384])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out-dir", default=str(RESULTS))
    a = p.parse_args(argv)
    if a.hidden < 1 or a.reps < 1 or min(a.map_sizes) < 1:
        p.error("--hidden, --reps and every --map-sizes value must be >= 1")
    r = run(a.hidden, a.map_sizes, a.dtypes, a.reps)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"pick_kernel_h{a.hidden}"
    (out / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
    md = to_markdown(r)
    (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
