"""Head-training throughput: trained target tokens per second, the text path vs the cached-state path, same
data, same machine, one run (issue #10's >= 10x goal).

    python -m benchmarks.train_throughput --model M --data train.jsonl --examples 64 --batch 8 \\
        --draft_vocab smollm2-en-8k,smollm2-zh-8k --out benchmarks/results/train_throughput

Each configuration trains one epoch over the same first N conversations through ``training.finetune.run``
(stock HF Trainer): the old path (main-model forward + full-vocabulary loss every step, as the committed
pipeline ran it: fp32, length-grouped batches), then the cached path (built once, timed separately) in bf16
autocast where native, over the full vocabulary and over the draft vocabulary (each conversation over its
language's map, finetune's default, and over the maps' union, the form before the tenth session), and over the
draft vocabulary in the serving attention form (what the shipped heads trained with: steps k > 1 attend the
step-1 keys/values, so only the chains that reach a trained token are computed past step 1's keys). Batches
length-grouped (finetune's default) or drawn at random (the stock Trainer's sampler; what this benchmark used
before the eighth session).
The old path runs as committed (glibc's default malloc), then once more with finetune's --keep_freed_memory
(training.host_malloc, on by default since the fifteenth session, as in every new-path configuration). Each
configuration trains in its own fresh process.
Target tokens = assistant tokens trained (each is a CE target at up to K steps). Writes results.json and results.md.
Run it on a quiet machine: nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OLD = "old: text path, fp32, length-grouped (the committed pipeline)"


def _slice(src: Path, n: int, dst: Path) -> Path:
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()][:n]
    if len(lines) < n:
        raise SystemExit(f"error: {src} has {len(lines)} conversations, --examples asks for {n}")
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def _train(model: str, data: Path, out: Path, batch: int, extra: list[str]) -> dict:
    """One epoch through ``training.finetune.run`` in a fresh process: a configuration inherits nothing from the
    ones before it (allocator state, oneDNN's primitive cache, malloc settings). In one shared process the serving
    form measured 18.7 s after seven other runs, 16.4 s alone."""
    args = ["--model_path", model, "--train_file", str(data), "--output_dir", str(out), "--num_train_epochs", "1",
            "--per_device_train_batch_size", str(batch), "--learning_rate", "1e-3", "--logging_steps", "1000",
            "--save_strategy", "no", "--disable_tqdm", "true", "--seed", "0", "--export", "head",
            "--max_seq_len", "1024", *extra]
    t0 = time.time()
    root = str(Path(__file__).resolve().parents[1])  # this checkout's training package, from any directory
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", _ONE_RUN, json.dumps(args)], stdout=subprocess.PIPE, text=True,
                          env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"error: training {out.name} failed (exit {proc.returncode}); its log is above")
    res = json.loads(lines[-1][len(_RESULT):])
    return {"wall_s": round(time.time() - t0, 2), "train_runtime_s": res["train_runtime"], "steps": res["steps"]}


_RESULT = "[train_throughput] "
_ONE_RUN = f"""
import json, sys
from training.finetune import parse_args, run
res = run(*parse_args(json.loads(sys.argv[1])))
print({_RESULT!r} + json.dumps({{"train_runtime": res["metrics"]["train_runtime"], "steps": res["steps"]}}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--num_steps", type=int, default=3, help="K")
    p.add_argument("--draft_vocab", default=None, help="maps for the draft-vocabulary configuration")
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)
    import torch
    from transformers import AutoTokenizer

    from training.data import load_chat_jsonl
    from training.precision import bf16_native

    a.out.mkdir(parents=True, exist_ok=True)
    work = a.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    data = _slice(a.data, a.examples, work / "data.jsonl")
    tok = AutoTokenizer.from_pretrained(a.model, local_files_only=True)
    examples, rep = load_chat_jsonl(data, tok, 1024)
    targets = rep.assistant_tokens
    k = ["--num_steps", str(a.num_steps)]
    load = os.getloadavg()
    rows = {}
    print(f"[throughput] {len(examples)} conversations, {targets} assistant tokens, load {load}", file=sys.stderr)
    random, grouped = ["--train_sampling_strategy", "random"], ["--train_sampling_strategy", "group_by_length"]
    fp32 = k + ["--bf16", "false", "--main_dtype", "float32"]
    # the old path as the committed pipeline ran it (glibc's default malloc), then with --keep_freed_memory
    untuned = ["--keep_freed_memory", "false"]
    rows[OLD] = _train(a.model, data, work / "old", a.batch, fp32 + grouped + untuned)
    rows["old: text path, fp32, random batches"] = _train(a.model, data, work / "old-random", a.batch,
                                                         fp32 + random + untuned)
    rows["old: text path, fp32, length-grouped, freed memory kept (host_malloc)"] = _train(
        a.model, data, work / "old-kept", a.batch, fp32 + grouped)
    from training.cache_states import build_cache

    t0 = time.time()
    build_cache(a.model, data, work / "cache", max_seq_len=1024, progress=False)
    cache_s = round(time.time() - t0, 2)
    new = k + ["--cache_dir", str(work / "cache"), "--label_source", "greedy"]
    rows["new: cached states, full vocabulary, length-grouped"] = _train(
        a.model, data, work / "new-full", a.batch, new + grouped)
    if a.draft_vocab:
        vocab = new + ["--draft_vocab", a.draft_vocab]
        rows[f"new: cached states, draft vocabulary ({a.draft_vocab}), random batches"] = _train(
            a.model, data, work / "new-vocab-random", a.batch, vocab + random)
        rows[f"new: cached states, draft vocabulary ({a.draft_vocab}), union of the maps, length-grouped"] = _train(
            a.model, data, work / "new-vocab-union", a.batch, vocab + grouped + ["--vocab_loss", "union"])
        rows[f"new: cached states, draft vocabulary ({a.draft_vocab}), length-grouped"] = _train(
            a.model, data, work / "new-vocab", a.batch, vocab + grouped)
        rows[f"new: cached states, draft vocabulary ({a.draft_vocab}), length-grouped, serving form"] = _train(
            a.model, data, work / "new-vocab-serving", a.batch, vocab + grouped + ["--train_form", "serving"])
    old_tps = targets / rows[OLD]["train_runtime_s"]
    for r in rows.values():
        r["target_tokens_per_s"] = round(targets / r["train_runtime_s"], 1)
        r["x_old"] = round(r["target_tokens_per_s"] / old_tps, 2)
    result = {
        "model": a.model, "data": str(a.data), "conversations": len(examples), "assistant_tokens": targets,
        "batch": a.batch, "K": a.num_steps, "bf16_native": bf16_native("cpu") if not torch.cuda.is_available()
        else bf16_native("cuda"), "threads": torch.get_num_threads(), "loadavg_before": load,
        "loadavg_after": os.getloadavg(), "cache_build_s": cache_s,
        "cache_build_tokens_per_s": round(rep.total_tokens / cache_s, 1), "total_tokens": rep.total_tokens,
        "configs": rows,
    }
    (a.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Head-training throughput ({len(examples)} conversations, {targets} assistant tokens, batch {a.batch}, "
        f"K={a.num_steps}, one epoch each)", "",
        "| path | train s | steps | target tokens/s | × old |", "| --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['train_runtime_s']:.1f} | {r['steps']} | {r['target_tokens_per_s']} | "
                     f"{r['x_old']}× |")
    lines += ["", f"Cache build (once, reused every epoch and run): {cache_s} s for {rep.total_tokens} tokens "
              f"({result['cache_build_tokens_per_s']} tok/s). Load average before/after: {load} / "
              f"{result['loadavg_after']}.", ""]
    (a.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
