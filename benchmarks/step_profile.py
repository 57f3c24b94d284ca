"""Step-cost profile: where one engine step goes at batch 1 on CPU, every method and K side by side in one run.

    python -m benchmarks.step_profile --model M --method none --method 'ngram=...' --method mtp --method fastmtp \\
        --k 1 2 3 --per-category 2 --max-new-tokens 128 --out-dir benchmarks/results/step_profile

Speed-up = τ ÷ (speculative step cost ÷ plain step cost); this splits the denominator. Each engine runs in its own
process (``benchmarks.step_profile_engine``) with wall-clock timers around the pieces of a step
(``vllm_fastmtp.integration.profiling``): scheduler, runner input preparation, target forward (by scheduled
tokens: 1 vs K+1), logits, (rejection) sampling, bookkeeping, the drafter (inputs, attention metadata, draft
forward per step, draft logits/argmax, fastmtp's language lookup) and output processing. Means are per DECODE
step (prefill steps are kept apart). Writes results.json and table.md. Exit 2 on bad input (no engine started),
1 if an engine failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.methods import BASELINE, expand
from benchmarks.run import INPUT_ERRORS, BenchmarkInputError, check_inputs, run_engine
from training.files import atomic_write

RESULT_FILES = ("results.json", "table.md")
NGRAM = '{"speculative_config": {"method": "ngram", "prompt_lookup_max": 3, "prompt_lookup_min": 1}}'
DEFAULT_METHODS = ["none", f"ngram={NGRAM}", "mtp", "fastmtp"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--method", action="append", default=None,
                   help="as in benchmarks.run (default: none, ngram (prompt lookup 1..3), mtp, fastmtp)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 3], help="num_speculative_tokens values to sweep")
    p.add_argument("--questions", nargs="+", default=None, help="Spec-Bench .jsonl files (default: the bundled sets)")
    p.add_argument("--per-category", type=int, default=None, help="use the first N questions of each category")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--engine-args", default="{}", help="JSON of extra vllm.LLM keyword arguments for every engine")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per engine process")
    return p


def prepare(a) -> tuple[list, list[dict], dict]:
    """Validate everything before an engine starts; returns the jobs, the questions and the engine arguments."""
    if a.max_new_tokens < 2:
        raise BenchmarkInputError(f"--max-new-tokens is {a.max_new_tokens}; expected >= 2 (decode steps are profiled)")
    if a.per_category is not None and a.per_category < 1:
        raise BenchmarkInputError(f"--per-category is {a.per_category}; expected >= 1")
    engine_args, methods, _, groups = check_inputs(a, DEFAULT_METHODS, "category")
    if engine_args.get("enforce_eager") is False:
        raise BenchmarkInputError("--engine-args enforce_eager false: the timers need the eager engine")
    jobs = expand(methods, a.k)
    questions = [{"question_id": q.question_id, "turns": list(q.turns)} for qs in groups.values() for q in qs]
    out = Path(a.out_dir)
    clash = [str(out / f) for f in RESULT_FILES if (out / f).exists()]
    if clash and not a.overwrite:
        raise BenchmarkInputError(f"results already exist: {clash}; pass --overwrite to replace them")
    return jobs, questions, {"dtype": a.dtype, **engine_args}


def _tree(components: list[list]) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """(names in report order, children per name, description per name) from the engine's recorded tree."""
    names = [c[0] for c in components]
    children: dict[str, list[str]] = {n: [] for n in names}
    for name, parent, _ in components:
        if parent is not None:
            children[parent].append(name)
    return names, children, {c[0]: c[2] for c in components}


def engine_row(key: str, method: str, k: int | None, res: dict) -> dict:
    """Per-decode-step means of one engine: ms per component, each parent's untimed rest, draft step cost."""
    dec = res["profile"]["kinds"]["decode"]
    steps = dec["steps"]
    if steps == 0:
        raise ValueError(f"{key}: no decode steps were profiled")
    comps = dec["components"]
    names, children, _ = _tree(res["profile"]["components"])
    ms = {n: 1000 * comps[n]["s"] / steps for n in names if n in comps}
    calls = {n: comps[n]["calls"] / steps for n in names if n in comps}
    other = {n: ms[n] - sum(ms.get(c, 0.0) for c in children[n])
             for n in names if n in ms and any(c in ms for c in children[n])}
    fwd, pick = comps.get("draft_forward"), comps.get("draft_pick")
    draft_step = 1000 * (fwd["s"] + (pick or {}).get("s", 0.0)) / fwd["calls"] if fwd and fwd["calls"] else None
    per_call = {name: {lab: {"ms_per_call": 1000 * v["s"] / v["calls"], "calls": v["calls"]} for lab, v in sp.items()}
                for name, sp in dec["splits"].items()}
    drafts = res.get("drafts") or 0
    return {
        "key": key, "method": method, "k": k, "decode_steps": steps,
        "prefill_steps": res["profile"]["kinds"]["prefill"]["steps"],
        "tokens_per_step": dec["tokens"] / steps, "step_ms": ms["step"], "ms_per_step": ms, "calls_per_step": calls,
        "other_ms_per_step": other, "per_call": per_call, "draft_step_ms": draft_step,
        "draft_steps_per_step": (fwd["calls"] / steps) if fwd else 0.0,
        "tau": (1 + res["accepted"] / drafts) if drafts else None,
        "tok_per_s_wall": res["output_tokens"] / res["wall_s"] if res["wall_s"] else None,
    }


def add_relative(rows: list[dict]) -> None:
    base = next((r for r in rows if r["method"] == BASELINE), None)
    for r in rows:
        b = base["step_ms"] if base else None
        r["step_vs_none"] = r["step_ms"] / b if b else None
        r["draft_step_pct_of_none"] = 100 * r["draft_step_ms"] / b if b and r["draft_step_ms"] is not None else None
        # tokens per decode step ÷ relative step cost: the decode-only speed-up these costs imply
        r["decode_speedup"] = r["tokens_per_step"] / r["step_vs_none"] if r["step_vs_none"] else None


def markdown(rows: list[dict], components: list[list], meta: dict) -> str:
    names, children, desc = _tree(components)
    f = lambda x, fmt=".2f": "–" if x is None else format(x, fmt)  # noqa: E731
    head = "| ms per decode step | " + " | ".join(r["key"] for r in rows) + " |"
    lines = [f"# Step-cost profile: {meta['model']}", "",
             f"{meta['device']}, {meta['threads']} torch threads, vLLM {meta['vllm_version']}, batch 1, greedy, eager, "
             f"{meta['questions']} questions, ≤ {meta['max_new_tokens']} new tokens, {meta['time']}. Mean wall-clock "
             "ms per decode step (prefill steps excluded); `(other)` = the parent's time outside its timed parts.", "",
             head, "|" + " --- |" * (len(rows) + 1)]

    def row(label: str, vals) -> None:
        lines.append(f"| {label} | " + " | ".join(vals) + " |")

    row("decode steps", [str(r["decode_steps"]) for r in rows])
    row("tokens / step", [f(r["tokens_per_step"]) for r in rows])
    row("**step**", [f"**{r['step_ms']:.2f}**" for r in rows])
    row("× none step", [f(r["step_vs_none"]) for r in rows])

    def walk(name: str, depth: int) -> None:
        if all(name not in r["ms_per_step"] for r in rows):
            return
        if name != "step":
            row("· " * depth + name, [f(r["ms_per_step"].get(name)) for r in rows])
        for c in children[name]:
            walk(c, depth + 1)
        if any(name in r["other_ms_per_step"] for r in rows):
            row("· " * (depth + 1) + "(other)", [f(r["other_ms_per_step"].get(name)) for r in rows])

    walk(names[0], 0)
    tf = lambda r, n: (r["per_call"].get("target_forward", {}).get(str(n)) or {}).get("ms_per_call")  # noqa: E731
    row("target forward, 1 token (ms/call)", [f(tf(r, 1)) for r in rows])
    row("target forward, K+1 tokens (ms/call)", [f(tf(r, r["k"] + 1)) if r["k"] else "–" for r in rows])
    row("draft steps / step", [f(r["draft_steps_per_step"]) for r in rows])
    row("draft step = forward + logits/argmax (ms)", [f(r["draft_step_ms"]) for r in rows])
    row("draft step, % of none step", [f(r["draft_step_pct_of_none"], ".1f") for r in rows])
    row("decode speed-up = tokens/step ÷ × none", [f(r["decode_speedup"]) for r in rows])
    row("τ (spec counters)", [f(r["tau"]) for r in rows])
    row("tok/s (wall, incl. prefill)", [f(r["tok_per_s_wall"], ".1f") for r in rows])
    lines += ["", "Components:", ""] + [f"* `{n}`: {desc[n]}" for n in names]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        jobs, questions, engine_args = prepare(a)
    except INPUT_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out_dir)
    work = out / "engines"
    work.mkdir(parents=True, exist_ok=True)
    print(f"{len(jobs)} engine(s) x {len(questions)} question(s): {[j.key for j in jobs]}", flush=True)
    results, rows, errors = {}, [], {}
    for job in jobs:
        payload = {"model": job.method.model or a.model, "speculative_config": job.speculative_config(),
                   "engine_args": {**engine_args, **job.method.engine_args}, "max_new_tokens": a.max_new_tokens,
                   "questions": questions}
        print(f"[{job.key}] starting", flush=True)
        res = run_engine(payload, job.key, work, a.timeout, module="benchmarks.step_profile_engine")
        try:
            if "error" in res:
                raise RuntimeError(res["error"])
            rows.append(engine_row(job.key, job.method.name, job.k, res))
        except (RuntimeError, ValueError) as e:
            print(f"[{job.key}] FAILED\n{e}", file=sys.stderr, flush=True)
            errors[job.key] = str(e)
            if job.k is None:
                print(f"!!! '{BASELINE}' failed; not running the other methods", file=sys.stderr, flush=True)
                break
            continue
        results[job.key] = res
        r = rows[-1]
        print(f"[{job.key}] {r['step_ms']:.2f} ms per decode step, {r['tokens_per_step']:.2f} tokens/step", flush=True)
    add_relative(rows)
    first = next(iter(results.values()), {})
    components = first.get("profile", {}).get("components", [])
    meta = {"model": a.model, "max_new_tokens": a.max_new_tokens, "questions": len(questions),
            "device": first.get("device"), "threads": first.get("threads"), "vllm_version": first.get("vllm_version"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "results.json", json.dumps({"meta": meta, "rows": rows, "errors": errors, "engines": results},
                                                   indent=1))
    if rows:
        atomic_write(out / "table.md", markdown(rows, components, meta))
        print((out / "table.md").read_text())
    if errors:
        print(f"\n!!! engine(s) failed: {sorted(errors)}", file=sys.stderr)
    print(f"wrote {out / 'results.json'}" + (f", {out / 'table.md'}" if rows else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
