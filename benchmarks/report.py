"""Turn per-engine results into the FastMTP paper's Table 1 view: per category τ and speedup, plus tok/s,
per-position acceptance, the lossless check, a markdown table and a plot."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from benchmarks.methods import BASELINE, VANILLA
from benchmarks.spec_metrics import add_vectors

OVERALL = "overall"


@dataclass
class Stats:
    tok_per_s: float
    tau: float | None
    per_position_acceptance: list[float]
    output_tokens: int
    wall_s: float
    drafts: int
    accepted: int


def stats_of(parts: list[dict], speculative: bool) -> Stats:
    """Pooled over categories: tokens / time, and acceptance from summed counters (not a mean of means)."""
    tokens = sum(p["output_tokens"] for p in parts)
    wall = sum(p["wall_s"] for p in parts)
    drafts = sum(p["drafts"] for p in parts)
    accepted = sum(p["accepted"] for p in parts)
    per_pos = functools.reduce(add_vectors, [p["accepted_per_pos"] for p in parts], [])
    if not speculative:
        tau, acc = 1.0, []
    elif drafts:
        tau, acc = 1.0 + accepted / drafts, [a / drafts for a in per_pos]
    else:
        tau, acc = None, []
    return Stats(tokens / wall if wall > 0 else 0.0, tau, acc, tokens, wall, drafts, accepted)


def table_rows(jobs: list[dict], categories: list[str]) -> list[dict]:
    """One row per job with Stats per category and overall, and speedups vs none and vs mtp at the same K."""
    rows = []
    for j in jobs:
        if j.get("error"):
            continue
        per = {c: stats_of([j["result"]["categories"][c]], j["k"] is not None) for c in categories}
        per[OVERALL] = stats_of([j["result"]["categories"][c] for c in categories], j["k"] is not None)
        # multi-turn categories, per turn index (results from before per-turn counters have none)
        turns = {c: [stats_of([t], j["k"] is not None) for t in j["result"]["categories"][c].get("per_turn", [])]
                 for c in categories}
        rows.append({"key": j["key"], "method": j["method"], "k": j["k"], "stats": per,
                     "per_turn": {c: t for c, t in turns.items() if len(t) > 1}})
    by = {(r["method"], r["k"]): r for r in rows}
    base = next((r for r in rows if r["method"] == BASELINE), None)
    for r in rows:
        r["speedup_vs_none"], r["speedup_vs_mtp"] = {}, {}
        vanilla = by.get((VANILLA, r["k"]))
        for c, s in r["stats"].items():
            r["speedup_vs_none"][c] = _ratio(s, base, c)
            r["speedup_vs_mtp"][c] = _ratio(s, vanilla, c)
    return rows


def _ratio(s: Stats, ref: dict | None, cat: str) -> float | None:
    if ref is None or not ref["stats"][cat].tok_per_s:
        return None
    return s.tok_per_s / ref["stats"][cat].tok_per_s


def lossless_mismatches(jobs: list[dict]) -> list[dict]:
    """Every (job, question, turn) whose output token ids differ from the no-speculation run's."""
    ref = next((j for j in jobs if j["method"] == BASELINE and not j.get("error")), None)
    if ref is None:
        return []
    out = []
    for j in jobs:
        if j is ref or j.get("error"):
            continue
        for cat, part in j["result"]["categories"].items():
            ref_out = ref["result"]["categories"][cat]["outputs"]
            for qid, turns in part["outputs"].items():
                for t, (a, b) in enumerate(zip(turns, ref_out[qid])):
                    if a != b:
                        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                        out.append({"job": j["key"], "category": cat, "question_id": qid, "turn": t + 1,
                                    "first_diff_token": first, "len": len(a), "reference_len": len(b)})
    return out


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def markdown(rows: list[dict], categories: list[str], meta: dict) -> str:
    cols = categories + [OVERALL]
    head = ["Method", "K"] + [f"{c} ×none" for c in cols[:-1]] + [f"{c} τ" for c in cols[:-1]] + [
        "tok/s", "×none", "×mtp", "τ"]
    lines = [
        f"# Benchmark: {meta.get('model')}",
        "",
        f"Batch 1, greedy, max {meta.get('max_new_tokens')} new tokens, device {meta.get('device')}, "
        f"vLLM {meta.get('vllm_version')}; questions per category: "
        + ", ".join(f"{c} {n}" for c, n in meta.get("questions_per_category", {}).items()) + ".",
        "×none / ×mtp: tok/s relative to no speculation / to vanilla `mtp` at the same K (measured in this run).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        s = r["stats"]
        cells = [r["method"], "–" if r["k"] is None else str(r["k"])]
        cells += [_f(r["speedup_vs_none"][c], ".2f") + "×" if r["speedup_vs_none"][c] else "–" for c in categories]
        cells += [_f(s[c].tau, ".2f") for c in categories]
        cells += [f"{s[OVERALL].tok_per_s:.1f}", _f(r["speedup_vs_none"][OVERALL], ".2f"),
                  _f(r["speedup_vs_mtp"][OVERALL], ".2f"), _f(s[OVERALL].tau, ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    spec_rows = [r for r in rows if r["k"] is not None]
    if spec_rows:
        width = max(len(r["stats"][OVERALL].per_position_acceptance) for r in spec_rows)
        lines += ["", "Per-position acceptance (accepted at position i / drafts, all categories):", "",
                  "| Method | K | " + " | ".join(f"pos {i + 1}" for i in range(width)) + " |",
                  "|---|---|" + "---|" * width]
        for r in spec_rows:
            acc = r["stats"][OVERALL].per_position_acceptance
            cells = [f"{a:.1%}" for a in acc] + ["–"] * (width - len(acc))
            lines.append(f"| {r['method']} | {r['k']} | " + " | ".join(cells) + " |")
    multi = [(c, n) for c in categories for n in range(max((len(r.get("per_turn", {}).get(c, [])) for r in rows), default=0))]
    if multi and spec_rows:
        lines += ["", "Per turn (multi-turn categories; a later turn follows the model's own, possibly capped, answer):",
                  "", "| Method | K | " + " | ".join(f"{c} turn {n + 1} τ" for c, n in multi) + " |",
                  "|---|---|" + "---|" * len(multi)]
        for r in spec_rows:
            pt = r.get("per_turn", {})
            cells = [_f(pt[c][n].tau, ".2f") if n < len(pt.get(c, [])) else "–" for c, n in multi]
            lines.append(f"| {r['method']} | {r['k']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    methods = []
    for r in rows:
        if r["k"] is not None and r["method"] not in methods:
            methods.append(r["method"])
    for m in methods:
        pts = sorted((r["k"], r["speedup_vs_none"][OVERALL]) for r in rows if r["method"] == m and r["speedup_vs_none"][OVERALL])
        if pts:
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    ax1.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="no speculation")
    from matplotlib.ticker import MaxNLocator

    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_xlabel("K (num_speculative_tokens)")
    ax1.set_ylabel("speedup vs no speculation (tok/s)")
    ax1.set_title("Speedup")
    ax1.legend()
    spec = [r for r in rows if r["k"] is not None]
    width = 0.8 / max(len(spec), 1)
    for n, r in enumerate(spec):
        acc = r["stats"][OVERALL].per_position_acceptance
        ax2.bar([i + 1 + (n - (len(spec) - 1) / 2) * width for i in range(len(acc))], acc, width=width, label=r["key"])
    ax2.set_xlabel("draft position")
    ax2.set_ylabel("acceptance (accepted / drafts)")
    ax2.set_ylim(0, 1)
    ax2.set_title("Per-position acceptance")
    if spec:
        ax2.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(rows: list[dict], headline_k: int | None) -> dict:
    """Per method at the headline K: the numbers the README quotes."""
    out = {}
    for r in rows:
        if r["k"] is not None and headline_k is not None and r["k"] != headline_k:
            continue
        s = r["stats"][OVERALL]
        out[r["method"]] = {
            "k": r["k"],
            "tok_per_s": s.tok_per_s,
            "tau": s.tau,
            "per_position_acceptance": s.per_position_acceptance,
            "speedup_vs_none": r["speedup_vs_none"][OVERALL],
            "speedup_vs_mtp": r["speedup_vs_mtp"][OVERALL],
            "per_category": {c: {"tok_per_s": st.tok_per_s, "tau": st.tau,
                                 "speedup_vs_none": r["speedup_vs_none"][c],
                                 **({"per_turn": [{"tau": t.tau, "per_position_acceptance": t.per_position_acceptance,
                                                   "tok_per_s": t.tok_per_s, "output_tokens": t.output_tokens}
                                                  for t in r["per_turn"][c]]} if c in r.get("per_turn", {}) else {})}
                             for c, st in r["stats"].items() if c != OVERALL},
        }
    return out
