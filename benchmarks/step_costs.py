"""Where the time goes: per-step costs recovered from a ``benchmarks.run`` results.json.

    python -m benchmarks.step_costs benchmarks/results/pipeline/results.json

Speculative decoding wins when τ (tokens per target step) grows faster than the cost of a step. With batch 1
every engine step is one target forward (prefill, or verification of the previous drafts) followed by the
draft steps, so from the counters the run already records:

* steps      = tokens − accepted drafts: every step (a prefill, or a decode step that verifies the drafts it has)
               emits one token of its own plus the drafts it accepts;   ms/step = wall / steps
  (not requests + drafts: vLLM counts a draft only for a step that proposed one, and a prompt-lookup (ngram)
  step with no match proposes none, so for ngram its τ = 1 + accepted / drafts is per drafting step; tokens/step
  below is per engine step, the number that sets the speed-up)
* for a method swept over K, a least-squares line ms/step = a + b·K: b is the cost of one draft step, a − (ms per
  step without speculation) the extra cost of verifying K+1 tokens (and of the proposer's fixed work) per step.

Speedup over no speculation = τ · ms_none / ms_step, so this says whether acceptance or cost limits it.
Writes step_costs.json and step_costs.md next to results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.methods import BASELINE


def step_table(results: dict) -> list[dict]:
    rows = []
    for j in results["jobs"]:
        if j.get("error"):
            continue
        parts = list(j["result"]["categories"].values())
        # counters, tokens and times are pooled over --rounds
        tokens = sum(p["output_tokens"] for p in parts)
        wall = sum(p["wall_s"] for p in parts)
        drafts = sum(p["drafts"] for p in parts)
        accepted = sum(p["accepted"] for p in parts)
        steps = tokens - accepted
        rows.append({
            "method": j["method"], "k": j["k"], "tau": (1 + accepted / drafts) if drafts else 1.0,
            "steps": steps, "tokens_per_step": tokens / steps, "drafting_steps": drafts,
            "ms_per_step": 1000 * wall / steps, "ms_per_token": 1000 * wall / tokens,
        })
    return rows


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(a, b) of y = a + b·x by least squares; None with fewer than two distinct x."""
    xs = {x for x, _ in points}
    if len(xs) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def analyse(results: dict) -> dict:
    rows = step_table(results)
    base = next((r for r in rows if r["method"] == BASELINE), None)
    fits = {}
    for m in sorted({r["method"] for r in rows if r["k"] is not None}):
        line = fit_line([(r["k"], r["ms_per_step"]) for r in rows if r["method"] == m])
        if line is not None:
            a, b = line
            fits[m] = {"fixed_ms": a, "per_draft_step_ms": b,
                       "verify_overhead_ms": (a - base["ms_per_step"]) if base else None}
    return {"baseline_ms_per_step": base["ms_per_step"] if base else None, "rows": rows, "fits": fits}


def markdown(a: dict) -> str:
    out = ["| method | K | τ (per drafting step) | steps | of which drafted | tokens/step | ms/step | ms/token |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in a["rows"]:
        k = "-" if r["k"] is None else r["k"]
        out.append(f"| {r['method']} | {k} | {r['tau']:.2f} | {r['steps']} | {r['drafting_steps']} | "
                   f"{r['tokens_per_step']:.2f} | {r['ms_per_step']:.1f} | {r['ms_per_token']:.1f} |")
    if a["fits"]:
        out += ["", "Fit ms/step = a + b·K per method swept over K (b: one draft step; a − baseline: verifying K+1 "
                "tokens plus the proposer's fixed work):", "",
                "| method | a (ms) | b = draft step (ms) | a − no-spec step (ms) |", "| --- | --- | --- | --- |"]
        for m, f in a["fits"].items():
            v = "-" if f["verify_overhead_ms"] is None else f"{f['verify_overhead_ms']:.1f}"
            out.append(f"| {m} | {f['fixed_ms']:.1f} | {f['per_draft_step_ms']:.1f} | {v} |")
    if a["baseline_ms_per_step"]:
        out.append(f"\nNo speculation: {a['baseline_ms_per_step']:.1f} ms per step (= per token).")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="results.json written by benchmarks.run")
    args = p.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
        a = analyse(results)
    except (OSError, json.JSONDecodeError, KeyError, ZeroDivisionError) as e:
        p.error(f"{args.results}: not a usable benchmarks.run results.json ({type(e).__name__}: {e})")
    (args.results.parent / "step_costs.json").write_text(json.dumps(a, indent=2))
    md = markdown(a)
    (args.results.parent / "step_costs.md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
