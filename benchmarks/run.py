"""Side-by-side speculative-decoding benchmark: every method (and K) in one run, each engine in its own process,
batch 1, greedy, Spec-Bench question files, per category.

    python -m benchmarks.run --model models/smollm2-mimo --method none --method mtp --k 1 2 3 \\
        --out-dir benchmarks/results/demo

Writes results.json (everything, including each engine's raw counters and outputs), table.md (the FastMTP
paper's Table 1 layout), plot.png and, with --summary, a compact summary.json. Exit status: 0 ok, 1 a method's
output differs from no speculation or an engine failed (both reported loudly), 2 bad input (nothing run).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.methods import BASELINE, Job, MethodSpecError, expand, parse_method
from benchmarks.questions import (
    BenchmarkOverlapError,
    QuestionFormatError,
    bundled_paths,
    check_no_overlap,
    load_question_sets,
)
from benchmarks.spec_metrics import add_counts, add_vectors
from training.cli import run_command
from training.files import atomic_write, json_object

RESULT_FILES = ("results.json", "table.md", "plot.png")


class BenchmarkInputError(ValueError):
    pass


# What bad input raises, before any engine starts: exit status 2.
INPUT_ERRORS = (BenchmarkInputError, MethodSpecError, QuestionFormatError, BenchmarkOverlapError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="MiMo-format checkpoint directory (default model for every method)")
    p.add_argument("--questions", nargs="+", default=None, help="Spec-Bench .jsonl files (default: the bundled sets)")
    p.add_argument("--per-category", type=int, default=None, help="use the first N questions of each group")
    p.add_argument("--group-by", choices=("category", "file"), default="category",
                   help="report per question category, or per question file (one column per task, as in the paper)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--method", action="append", default=None,
                   help="built-in name (none, mtp, fastmtp) or NAME=JSON; repeatable (default: none and mtp)")
    p.add_argument("--k", type=int, nargs="+", default=[3], help="num_speculative_tokens values to sweep")
    p.add_argument("--headline-k", type=int, default=None, help="K reported in summary.json (default: 3 if swept, else the first K)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--summary", default=None, help="also write the compact summary JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in --out-dir / --summary")
    p.add_argument("--engine-args", default="{}", help="JSON of extra vllm.LLM keyword arguments for every engine")
    p.add_argument("--max-model-len", type=int, default=None, help="default: the model's own")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--eager", choices=("auto", "yes", "no"), default="auto",
                   help="enforce_eager: auto = eager on CPU (exact, fast start), compiled on GPU")
    p.add_argument("--training-prompts", nargs="+", default=None,
                   help="fail before running if any benchmark prompt appears in these training files")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per engine process")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every engine this many times, interleaved (A B C A B C ...), each a fresh process: the "
                        "per-round ratios show how much the machine drifted; the tables pool the rounds")
    return p


def _check_model(path: str, what: str) -> None:
    """A local directory must be a checkpoint; anything else must look like a hub id (org/name)."""
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise BenchmarkInputError(f"{what}: {path} has no config.json; expected a checkpoint directory")
    elif path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise BenchmarkInputError(f"{what}: {path} does not exist; expected a checkpoint directory")


def check_inputs(args, default_methods: list[str], group_by: str) -> tuple[dict, list, list[str], dict]:
    """The checks every benchmark makes before an engine starts (``--model``, ``--engine-args``, ``--method``,
    ``--questions``, ``--per-category``, ``--training-prompts``); returns the engine arguments, the methods, the
    question files and the question groups."""
    _check_model(args.model, "--model")
    engine_args = json_object(args.engine_args, "--engine-args", BenchmarkInputError)
    methods = [parse_method(m) for m in (args.method or default_methods)]
    if not any(m.speculative_config is None for m in methods):
        raise BenchmarkInputError("the methods must include 'none': it is the speedup and lossless reference")
    for m in methods:
        if m.model:
            _check_model(m.model, f"--method {m.name} model")
    qfiles = args.questions or [str(p) for p in bundled_paths()]
    groups = load_question_sets(qfiles, args.per_category, group_by)
    if getattr(args, "training_prompts", None):
        check_no_overlap(args.training_prompts, qfiles)
    return engine_args, methods, qfiles, groups


def prepare(args) -> tuple[list[Job], dict, dict]:
    """Validate every input before any engine starts."""
    if args.max_new_tokens < 1:
        raise BenchmarkInputError(f"--max-new-tokens is {args.max_new_tokens}; expected >= 1")
    if args.rounds < 1:
        raise BenchmarkInputError(f"--rounds is {args.rounds}; expected >= 1")
    if args.per_category is not None and args.per_category < 1:
        raise BenchmarkInputError(f"--per-category is {args.per_category}; expected >= 1")
    engine_args, methods, qfiles, groups = check_inputs(args, ["none", "mtp"], args.group_by)
    jobs = expand(methods, args.k)
    out = Path(args.out_dir)
    if not args.overwrite:
        clash = [str(out / f) for f in RESULT_FILES if (out / f).exists()]
        if args.summary and Path(args.summary).exists():
            clash.append(args.summary)
        if clash:
            raise BenchmarkInputError(f"results already exist: {clash}; pass --overwrite to replace them")
    ks = sorted({j.k for j in jobs if j.k is not None})
    headline = args.headline_k if args.headline_k is not None else (3 if 3 in ks else (ks[0] if ks else None))
    if args.headline_k is not None and args.headline_k not in ks:
        raise BenchmarkInputError(f"--headline-k {args.headline_k} is not among the swept K values {ks}")
    common = {"engine_args": engine_args, "headline_k": headline, "question_files": qfiles}
    return jobs, groups, common


def job_payload(job: Job, args, groups, common) -> dict:
    engine_args = {"dtype": args.dtype}
    if args.max_model_len is not None:
        engine_args["max_model_len"] = args.max_model_len
    engine_args.update({**common["engine_args"], **job.method.engine_args})
    return {
        "model": job.method.model or args.model,
        "speculative_config": job.speculative_config(),
        "engine_args": engine_args,
        "enforce_eager": {"auto": None, "yes": True, "no": False}[args.eager],
        "max_new_tokens": args.max_new_tokens,
        "categories": {c: [{"question_id": q.question_id, "turns": list(q.turns)} for q in qs] for c, qs in groups.items()},
    }


def run_engine(payload: dict, key: str, work: Path, timeout: float, module: str = "benchmarks.engine_run") -> dict:
    """Run one engine process (``python -m MODULE JOB RESULT``); returns its result or {'error': ...} (the run goes
    on with the other methods)."""
    safe = key.replace("@", "_").replace("=", "")
    work.mkdir(parents=True, exist_ok=True)
    job_file, result_file, log_file = work / f"{safe}.job.json", work / f"{safe}.result.json", work / f"{safe}.log"
    job_file.write_text(json.dumps(payload))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0")}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    t0 = time.perf_counter()
    with open(log_file, "w") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", module, str(job_file), str(result_file)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0 or not result_file.is_file():
        tail = log_file.read_text(errors="replace")[-2000:]
        return {"error": f"engine process for {key} failed (exit {rc}); log {log_file}:\n{tail}"}
    res = json.loads(result_file.read_text())
    res["process_s"] = time.perf_counter() - t0
    return res


POOLED = ("wall_s", "output_tokens", "drafts", "accepted", "requests")


def pool_rounds(results: list[dict]) -> dict:
    """One result from an engine's rounds: counters and times summed (tok/s = all tokens / all time), the first
    round's outputs (greedy: every round's must be the same, checked by ``round_mismatches``)."""
    first = results[0]
    cats = {}
    for c, part in first["categories"].items():
        parts = [r["categories"][c] for r in results]
        cats[c] = {**part, **{f: sum(p[f] for p in parts) for f in POOLED},
                   "accepted_per_pos": functools.reduce(add_vectors, [p["accepted_per_pos"] for p in parts], []),
                   "request_wall_s": [w for p in parts for w in p["request_wall_s"]]}
        if "per_turn" in part:  # counters per turn index, summed over rounds the same way
            turns = max(len(p["per_turn"]) for p in parts)
            cats[c]["per_turn"] = [
                functools.reduce(add_counts, [p["per_turn"][t] for p in parts if t < len(p["per_turn"])], {})
                for t in range(turns)]
    return {**first, "categories": cats, "rounds": len(results),
            "engine_start_s": sum(r["engine_start_s"] for r in results) / len(results)}


def round_mismatches(key: str, results: list[dict]) -> list[dict]:
    """Outputs of a later round that differ from the first round's (nondeterminism would void the lossless check)."""
    out = []
    for n, r in enumerate(results[1:], start=2):
        for c, part in r["categories"].items():
            for qid, turns in part["outputs"].items():
                if turns != results[0]["categories"][c]["outputs"][qid]:
                    out.append({"job": key, "round": n, "category": c, "question_id": qid,
                                "differs_from": "round 1 of the same engine"})
    return out


def round_spread(per_round: dict[str, list[dict]]) -> list[dict]:
    """Per round: each engine's tok/s and its ratio to no speculation measured in the same round."""
    rows = []
    base = per_round.get(BASELINE, [])
    for key, results in per_round.items():
        for n, res in enumerate(results, start=1):
            s = report.stats_of(list(res["categories"].values()), key != BASELINE)
            b = base[n - 1] if n - 1 < len(base) else None
            ref = report.stats_of(list(b["categories"].values()), False).tok_per_s if b else None
            rows.append({"key": key, "round": n, "tok_per_s": s.tok_per_s, "tau": s.tau,
                         "speedup_vs_none": (s.tok_per_s / ref) if ref else None})
    return rows


def spread_markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(r["key"] for r in rows))
    n = max(r["round"] for r in rows)
    by = {(r["key"], r["round"]): r for r in rows}
    cell = lambda r: "–" if r is None else f"{r['tok_per_s']:.1f}" + ("" if r["speedup_vs_none"] is None else f" ({r['speedup_vs_none']:.2f}×)")
    md = ["", "Rounds (engines interleaved, a fresh process each): tok/s (× none in the same round)", "",
          "| Method | " + " | ".join(f"round {i}" for i in range(1, n + 1)) + " | ×none min–max |",
          "|---|" + "---|" * (n + 1)]
    for k in keys:
        ratios = [by[(k, i)]["speedup_vs_none"] for i in range(1, n + 1) if (k, i) in by and by[(k, i)]["speedup_vs_none"]]
        span = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "–"
        md.append(f"| {k} | " + " | ".join(cell(by.get((k, i))) for i in range(1, n + 1)) + f" | {span} |")
    return "\n".join(md) + "\n"


def write_outputs(args, jobs_out: list[dict], groups, common, spread: list[dict] | None = None,
                  extra_mismatches: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    cats = list(groups)
    rows = report.table_rows(jobs_out, cats)
    mism = report.lossless_mismatches(jobs_out) + (extra_mismatches or [])
    first_ok = next((j["result"] for j in jobs_out if not j.get("error")), {})
    meta = {
        "model": args.model,
        "max_new_tokens": args.max_new_tokens,
        "device": first_ok.get("device"),
        "vllm_version": first_ok.get("vllm_version"),
        "enforce_eager": first_ok.get("enforce_eager"),
        "questions_per_category": {c: len(q) for c, q in groups.items()},
        "question_files": common["question_files"],
        "headline_k": common["headline_k"],
        "rounds": args.rounds,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out_dir)
    results = {
        "meta": meta,
        "rows": [{**{k: v for k, v in r.items() if k not in ("stats", "per_turn")},
                  "stats": {c: vars(s) for c, s in r["stats"].items()},
                  "per_turn": {c: [vars(s) for s in t] for c, t in r["per_turn"].items()}} for r in rows],
        "lossless_mismatches": mism,
        "errors": {j["key"]: j["error"] for j in jobs_out if j.get("error")},
        **({"round_spread": spread} if spread else {}),
        "jobs": jobs_out,
    }
    atomic_write(out / "results.json", json.dumps(results, indent=1))
    md = report.markdown(rows, cats, meta) + (spread_markdown(spread) if spread else "")
    if mism:
        md += f"\n**LOSSLESS CHECK FAILED**: {len(mism)} output(s) differ from no speculation (see results.json).\n"
    atomic_write(out / "table.md", md)
    with tempfile.NamedTemporaryFile(suffix=".png", dir=out, delete=False) as tmp:
        pass
    report.plot(rows, tmp.name, f"{Path(args.model).name}: batch 1, greedy, {args.max_new_tokens} new tokens")
    os.replace(tmp.name, out / "plot.png")
    if args.summary:
        summ = {"meta": meta, "methods": report.summary(rows, common["headline_k"]), "lossless": not mism}
        atomic_write(Path(args.summary), json.dumps(summ, indent=2))
    return rows, mism


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: run(args, *prepare(args)), *INPUT_ERRORS)


def run(args, jobs: list[Job], groups: dict, common: dict) -> int:
    out = Path(args.out_dir)
    work = out / "engines"
    n_q = sum(len(q) for q in groups.values())
    print(f"{len(jobs)} engine(s) x {n_q} question(s) in {len(groups)} categories: {[j.key for j in jobs]}"
          + (f", {args.rounds} interleaved rounds" if args.rounds > 1 else ""), flush=True)
    per_round: dict[str, list] = {j.key: [] for j in jobs}
    errors: dict[str, str] = {}
    stop = False
    for n in range(1, args.rounds + 1):
        for job in jobs:
            if job.key in errors:
                continue
            tag = job.key if args.rounds == 1 else f"{job.key} round {n}"
            print(f"[{tag}] starting", flush=True)
            res = run_engine(job_payload(job, args, groups, common), job.key,
                             work if args.rounds == 1 else work / f"round{n}", args.timeout)
            if "error" in res:
                print(f"[{tag}] FAILED\n{res['error']}", file=sys.stderr, flush=True)
                errors[job.key] = res["error"]
                if job.k is None:  # without the reference there is no speedup and no lossless check: stop here
                    print(f"!!! '{BASELINE}' failed; not running the other methods", file=sys.stderr, flush=True)
                    stop = True
                    break
                continue
            per_round[job.key].append(res)
            s = report.stats_of(list(res["categories"].values()), job.k is not None)
            tau = "–" if s.tau is None else f"{s.tau:.2f}"
            print(f"[{tag}] {s.tok_per_s:.1f} tok/s, tau {tau}, engine start {res['engine_start_s']:.1f}s", flush=True)
        if stop:
            break
    jobs_out, extra = [], []
    for job in jobs:
        if not per_round[job.key] and job.key not in errors:
            continue  # never ran: the baseline failed first
        entry = {"key": job.key, "method": job.method.name, "k": job.k, "speculative_config": job.speculative_config()}
        if job.key in errors:
            entry["error"] = errors[job.key]
        else:
            results = per_round[job.key]
            entry["result"] = results[0] if len(results) == 1 else pool_rounds(results)
            extra += round_mismatches(job.key, results)
        jobs_out.append(entry)
    spread = round_spread({k: v for k, v in per_round.items() if k not in errors}) if args.rounds > 1 else None
    rows, mism = write_outputs(args, jobs_out, groups, common, spread, extra)
    print((out / "table.md").read_text())
    failed = [j["key"] for j in jobs_out if j.get("error")]
    if mism:
        print(f"\n!!! LOSSLESS CHECK FAILED: {len(mism)} output(s) differ from '{BASELINE}':", file=sys.stderr)
        for m in mism[:20]:
            print(f"!!!   {m}", file=sys.stderr)
    if failed:
        print(f"\n!!! engine(s) failed: {failed}", file=sys.stderr)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'plot.png'}" + (f", {args.summary}" if args.summary else ""))
    return 1 if (mism or failed) else 0


if __name__ == "__main__":
    sys.exit(main())
