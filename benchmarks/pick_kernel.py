"""The pruned draft head's pick (logits over a map's rows + argmax): plain torch matmul vs vLLM's prepared kernel.

One pick per call (batch 1 by default, ``--batches`` for a loaded engine's decode batches), as a draft step makes,
with the CPU caches flushed before each call (inside the engine the target model's forward has evicted the map's
rows by the time the drafter runs). Both kernels and every dtype/map size/batch are timed interleaved in one run.
Writes {OUT_DIR}/pick_kernel_h{HIDDEN}.{json,md}; the table names the kernel the drafter's ``pick_kernel: "auto"``
would keep from these timings where batches 1 and 8 were both measured.
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
from vllm_fastmtp.precision import bf16_native

RESULTS = Path(__file__).parent / "results"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def run(hidden: int, map_sizes: list[int], dtypes: list[str], reps: int, flush_mb: int = 256, seed: int = 0,
        batches: list[int] | None = None) -> dict:
    from vllm_fastmtp.integration.linear import draft_linear

    batches = batches or [1]

    g = torch.Generator().manual_seed(seed)
    flush = torch.zeros(flush_mb * 2**20 // 4)
    jobs = []
    for dt in dtypes:
        for n in map_sizes:
            rows = torch.randn(n, hidden, generator=g).to(DTYPES[dt])
            ids = {"m": torch.arange(n)}
            heads = {k: PrunedDraftHead(rows, ids, linear=lambda w, k=k: draft_linear(w, kernel=k))
                     for k in ("torch", "vllm")}
            for m in batches:
                h = torch.randn(m, hidden, generator=g).to(DTYPES[dt])
                for kernel, head in heads.items():
                    jobs.append((f"{dt}/{n}/b{m}/{kernel}", head, h))
    times: dict[str, list[float]] = {name: [] for name, _, _ in jobs}
    rng = random.Random(seed)
    with torch.inference_mode():
        for name, head, h in jobs:  # warm-up
            head.argmax(h, ["m"] * h.shape[0])
        for _ in range(reps):
            order = jobs[:]
            rng.shuffle(order)
            for name, head, h in order:
                flush.add_(1.0)
                t0 = time.perf_counter()
                head.argmax(h, ["m"] * h.shape[0])
                times[name].append((time.perf_counter() - t0) * 1e3)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "hidden": hidden, "map_sizes": map_sizes, "dtypes": dtypes, "batches": batches, "reps": reps,
        "flush_mb": flush_mb,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "cpu_flags": f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                     f"native bf16 {bf16_native('cpu')}",
        "median_ms": median, "raw_ms": times,
    }


def to_markdown(r: dict) -> str:
    from vllm_fastmtp.integration.linear import CALIBRATION_BATCHES, pick_faster

    lines = [
        "# Pruned draft pick: plain torch matmul vs vLLM's prepared kernel (CPU)", "",
        f"`python -m benchmarks.pick_kernel` — batch {', '.join(map(str, r['batches']))}, hidden {r['hidden']}, "
        f"caches flushed ({r['flush_mb']} MB) before every call, medians of {r['reps']} interleaved repetitions, "
        f"{r['threads']} torch threads, torch {r['torch']}, CPU: {r.get('cpu_flags', r['cpu'])}.", "",
        "| dtype | map rows | batch | torch matmul (ms) | vLLM kernel (ms) | speed-up | GB/s (vLLM) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    med = r["median_ms"]
    for dt in r["dtypes"]:
        for n in r["map_sizes"]:
            for m in r["batches"]:
                a, b = med[f"{dt}/{n}/b{m}/torch"], med[f"{dt}/{n}/b{m}/vllm"]
                gb = n * r["hidden"] * DTYPES[dt].itemsize / 1e9
                lines.append(f"| {dt} | {n:,} | {m} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {gb / (b / 1e3):.1f} |")
    if set(CALIBRATION_BATCHES) <= set(r["batches"]):
        timed = " and ".join(map(str, CALIBRATION_BATCHES))
        lines += ["", f"`pick_kernel: \"auto\"` on fp32 rows (timed at batch {timed} when the drafter loads) "
                  "would keep:", ""]
        for dt in r["dtypes"]:
            for n in r["map_sizes"]:
                choice = pick_faster({k: {m: med[f"{dt}/{n}/b{m}/{k}"] for m in CALIBRATION_BATCHES}
                                      for k in ("torch", "vllm")})
                rule = "this choice" if dt == "fp32" else "vLLM's kernel whatever the timings (bf16 rows)"
                lines.append(f"* {dt}, {n:,} rows: faster by these timings: {choice}; auto uses {rule}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pick_kernel", description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=576, help="hidden size (576: the demo model; 4096: MiMo-7B)")
    p.add_argument("--map-sizes", type=int, nargs="+", default=[8192, 16384])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    p.add_argument("--batches", type=int, nargs="+", default=[1], help="rows per pick (decode batch sizes)")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out-dir", default=str(RESULTS))
    a = p.parse_args(argv)
    if a.hidden < 1 or a.reps < 1 or min(a.map_sizes) < 1 or min(a.batches) < 1:
        p.error("--hidden, --reps and every --map-sizes and --batches value must be >= 1")
    r = run(a.hidden, a.map_sizes, a.dtypes, a.reps, batches=a.batches)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"pick_kernel_h{a.hidden}"
    (out / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
    md = to_markdown(r)
    (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
