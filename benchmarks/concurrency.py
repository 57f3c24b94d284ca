"""Speculation under load: total throughput and per-request latency at several concurrency levels, every method
side by side in one run (each engine in its own process, greedy, the same prompts in the same order).

    python -m benchmarks.concurrency --model M --method none --method ngram=... --method fastmtp=... \\
        --levels 1 4 16 64 --out-dir benchmarks/results/concurrency

A level C keeps C requests in flight (closed loop) until max(C x --waves, --min-requests) requests have finished.
Writes results.json, table.md and plot.png. Outputs are compared with no speculation at the same level and the
share of identical requests reported (batched fp32 kernels may break argmax ties differently as the batch
changes; the batch-1 lossless contract is tested elsewhere). Exit 2 on bad input, 1 if an engine failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.methods import BASELINE, expand
from benchmarks.run import INPUT_ERRORS, BenchmarkInputError, check_inputs, run_engine
from training.cli import run_command
from training.files import atomic_write

RESULT_FILES = ("results.json", "table.md", "plot.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--method", action="append", default=None, help="as in benchmarks.run (default: none and fastmtp)")
    p.add_argument("--k", type=int, default=3, help="num_speculative_tokens where a method does not fix it")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--waves", type=int, default=2, help="requests per level = max(levels x waves, --min-requests)")
    p.add_argument("--min-requests", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--questions", nargs="+", default=None, help="Spec-Bench .jsonl files (default: the bundled sets)")
    p.add_argument("--per-category", type=int, default=None)
    p.add_argument("--training-prompts", nargs="+", default=None, help="refuse prompts that appear in these files")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--engine-args", default="{}", help="JSON of extra vllm.LLM keyword arguments for every engine")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--timeout", type=float, default=3600.0)
    return p


def prepare(a) -> tuple[list, list[str], dict]:
    """Validate everything before an engine starts; returns the jobs, the prompts (first turns) and the engine
    arguments."""
    if not a.levels or any(c < 1 for c in a.levels):
        raise BenchmarkInputError(f"--levels {a.levels}: expected positive integers")
    for name in ("waves", "min_requests", "max_new_tokens"):
        if getattr(a, name) < 1:
            raise BenchmarkInputError(f"--{name.replace('_', '-')} is {getattr(a, name)}; expected >= 1")
    engine_args, methods, _, groups = check_inputs(a, ["none", "fastmtp"], "category")
    out = Path(a.out_dir)
    clash = [str(out / f) for f in RESULT_FILES if (out / f).exists()]
    if clash and not a.overwrite:
        raise BenchmarkInputError(f"results already exist: {clash}; pass --overwrite to replace them")
    # interleave the categories so that every level sees a mix of tasks
    lists = [[q.turns[0] for q in qs] for qs in groups.values()]
    prompts = [lst[i] for i in range(max(map(len, lists))) for lst in lists if i < len(lst)]
    return expand(methods, [a.k]), prompts, engine_args


def level_row(method: str, level: dict, ref: dict | None) -> dict:
    reqs = level["requests"]
    lat = sorted(r["latency_s"] for r in reqs)
    tps = level["output_tokens"] / level["wall_s"]
    row = {
        "method": method, "concurrency": level["concurrency"], "requests": len(reqs), "tok_per_s": tps,
        "latency_mean_s": statistics.fmean(lat), "latency_p90_s": lat[min(len(lat) - 1, int(0.9 * len(lat)))],
        "ttft_mean_s": statistics.fmean(r["ttft_s"] for r in reqs),
        "tpot_mean_ms": 1000 * statistics.fmean((r["latency_s"] - r["ttft_s"]) / max(1, r["output_tokens"] - 1) for r in reqs),
        "tau": (1 + level["accepted"] / level["drafts"]) if level.get("drafts") else None,
        "speedup_vs_none": None, "identical_to_none": None,
    }
    if ref is not None:
        row["speedup_vs_none"] = tps / (ref["output_tokens"] / ref["wall_s"])
        same = sum(a["ids"] == b["ids"] for a, b in zip(reqs, ref["requests"]))
        row["identical_to_none"] = same / len(reqs)
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    f = lambda x, fmt: "–" if x is None else format(x, fmt)  # noqa: E731
    lines = [f"# Throughput and latency under load: {meta['model']}", "",
             f"{meta['device']}, vLLM {meta['vllm_version']}, greedy, {meta['max_new_tokens']} new tokens per request, "
             f"closed loop (C requests in flight), {meta['time']}", "",
             "| method | C | requests | tok/s (all requests) | vs none | mean latency s | p90 latency s | mean TTFT s "
             "| mean TPOT ms | τ | identical to none |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["concurrency"], r["method"] != BASELINE)):
        lines.append(f"| {r['method']} | {r['concurrency']} | {r['requests']} | {r['tok_per_s']:.1f} | "
                     f"{f(r['speedup_vs_none'], '.2f')}× | {r['latency_mean_s']:.2f} | {r['latency_p90_s']:.2f} | "
                     f"{r['ttft_mean_s']:.2f} | {r['tpot_mean_ms']:.1f} | {f(r['tau'], '.2f')} | "
                     f"{f(r['identical_to_none'], '.0%')} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["concurrency"], r["tok_per_s"], r["latency_mean_s"]) for r in rows if r["method"] == m)
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=m)
    for ax, ylabel in ((ax1, "total output tok/s"), (ax2, "mean request latency (s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return run_command(lambda: run(a, *prepare(a)), *INPUT_ERRORS)


def run(a, jobs: list, prompts: list[str], engine_args: dict) -> int:
    out = Path(a.out_dir)
    work = out / "engines"
    results, rows, errors = {}, [], {}
    for job in jobs:
        payload = {"model": job.method.model or a.model, "speculative_config": job.speculative_config(),
                   "engine_args": {"dtype": a.dtype, **engine_args, **job.method.engine_args},
                   "levels": a.levels, "waves": a.waves, "min_requests": a.min_requests,
                   "max_new_tokens": a.max_new_tokens, "prompts": prompts}
        print(f"[{job.key}] starting", flush=True)
        res = run_engine(payload, job.key, work, a.timeout, module="benchmarks.load_engine")
        if "error" in res:
            print(f"[{job.key}] FAILED\n{res['error']}", file=sys.stderr, flush=True)
            errors[job.key] = res["error"]
            if job.k is None:
                break
            continue
        results[job.key] = res
        ref = results.get(BASELINE)
        for lv in res["levels"]:
            ref_lv = None if ref is None or job.k is None else next(x for x in ref["levels"] if x["concurrency"] == lv["concurrency"])
            rows.append(level_row(job.key, lv, ref_lv))
            r = rows[-1]
            print(f"[{job.key}] C={lv['concurrency']}: {r['tok_per_s']:.1f} tok/s, mean latency {r['latency_mean_s']:.2f} s",
                  flush=True)
    first = next(iter(results.values()), {})
    meta = {"model": a.model, "max_new_tokens": a.max_new_tokens, "levels": a.levels, "waves": a.waves,
            "min_requests": a.min_requests, "prompts": len(prompts), "device": first.get("device"),
            "vllm_version": first.get("vllm_version"), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "results.json", json.dumps({"meta": meta, "rows": rows, "errors": errors, "engines": results}))
    atomic_write(out / "table.md", markdown(rows, meta))
    if rows:
        plot(rows, out / "plot.png", f"{Path(a.model).name}: greedy, {a.max_new_tokens} new tokens, closed loop")
    print((out / "table.md").read_text())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
