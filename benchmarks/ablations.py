"""Head-training ablations on a fixed slice: one change at a time against a base recipe, same cached data, same
step budget, offline acceptance on held-out conversations and (optionally) served acceptance in real vLLM on a
dev prompt set — never on the benchmark questions (nothing is tuned on them).

    python -m benchmarks.ablations --model M --train-file train.jsonl --cache cache/train \\
        --eval-file eval.jsonl --eval-cache cache/eval --maps en.pt,zh.pt --steps 200 \\
        --dev-questions dev.jsonl --out benchmarks/results/ablations

Writes results.json and results.md (the table). Each arm is ``training.finetune.run`` with the base flags plus its
own; served acceptance comes from one ``benchmarks.run`` over every arm's servable checkpoint (fastmtp, K=3,
the maps), so all arms are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# flag overrides of the base recipe (None removes the flag); "lr_scale" multiplies the base --learning-rate
ARMS: dict[str, dict[str, str | None]] = {
    "base: greedy labels, draft-vocab CE, paper form": {},
    "data labels": {"label_source": "data"},
    "lr / 4": {"lr_scale": "0.25"},
    "KL 0.5 to top-20": {"distill_weight": "0.5"},
    "serving attention form": {"train_form": "serving"},
    "full-vocabulary CE": {"draft_vocab": None},
    # the shipped recipe's form (serving), with and without the draft-vocabulary restriction
    "serving form, full-vocabulary CE": {"train_form": "serving", "draft_vocab": None},
}


def _arm_args(a, name: str, overrides: dict[str, str | None]) -> list[str]:
    flags = {
        "model_path": a.model, "train_file": a.train_file, "cache_dir": a.cache, "eval_file": a.eval_file,
        "eval_cache_dir": a.eval_cache, "max_eval_examples": str(a.eval_examples), "max_seq_len": "1024",
        "label_source": "greedy", "draft_vocab": a.maps, "num_steps": "3", "learning_rate": str(a.learning_rate),
        "warmup_steps": "0.05", "max_steps": str(a.steps), "per_device_train_batch_size": str(a.batch),
        "eval_strategy": "no", "save_strategy": "no", "logging_steps": "50", "disable_tqdm": "true", "seed": "0",
        "output_dir": str(Path(a.work) / _slug(name)), "export": "full",
    }
    overrides = dict(overrides)
    flags["learning_rate"] = str(a.learning_rate * float(overrides.pop("lr_scale", 1.0)))
    flags.update(overrides)
    return [x for k, v in flags.items() if v is not None for x in (f"--{k}", v)]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(":")[0]).strip("-").lower()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--train-file", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--eval-file", required=True)
    p.add_argument("--eval-cache", required=True)
    p.add_argument("--eval-examples", type=int, default=150)
    p.add_argument("--maps", required=True, help="comma-separated en,zh maps (training vocabulary and serving)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=2e-3,
                   help="the base recipe's peak lr (lower it when the model already carries a trained head)")
    p.add_argument("--arms", nargs="*", default=None, help="subset of arm names (default: all)")
    p.add_argument("--dev-questions", default=None, help="Spec-Bench file of dev prompts for served acceptance")
    p.add_argument("--dev-max-new-tokens", type=int, default=96)
    p.add_argument("--served-only", action="store_true",
                   help="skip training: serve the arms already trained in OUT/results.json")
    p.add_argument("--out", required=True, help="results.json / results.md go here (small: commit them)")
    p.add_argument("--work", default="runs/ablations", help="the arms' trained checkpoints (large: not committed)")
    a = p.parse_args(argv)
    from training.finetune import parse_args, run

    arms = {k: v for k, v in ARMS.items() if a.arms is None or _slug(k) in a.arms or k in a.arms}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"steps": a.steps, "batch": a.batch, "learning_rate": a.learning_rate, "maps": a.maps,
               "train_file": a.train_file, "eval_file": a.eval_file, "arms": {}}
    if a.served_only:
        results = json.loads((out / "results.json").read_text())
        arms = {}
    for name, extra in arms.items():
        res = run(*parse_args(_arm_args(a, name, extra)))
        m = res["metrics"]
        results["arms"][name] = {
            "overrides": extra, "serve_dir": res.get("serve_dir"), "train_runtime_s": m.get("train_runtime"),
            "offline": {k: m.get(f"eval_accept_pos{k}") for k in (1, 2, 3)},
            "eval_loss": m.get("eval_loss"), "skipped_targets": res.get("skipped_targets"),
        }
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"[ablations] {name}: {results['arms'][name]['offline']}", file=sys.stderr)
    if a.dev_questions:
        en, zh = a.maps.split(",")
        spec = {"method": "fastmtp", "num_speculative_tokens": 3, "draft_vocab": {"maps": {"en": en, "zh": zh}}}
        methods = ["none"] + [f"{_slug(n)}=" + json.dumps({"model": r["serve_dir"], "speculative_config": spec})
                              for n, r in results["arms"].items()]
        first = next(iter(results["arms"].values()))["serve_dir"]
        cmd = [sys.executable, "-m", "benchmarks.run", "--model", first, "--dtype", "float32", "--questions",
               a.dev_questions, "--max-new-tokens", str(a.dev_max_new_tokens), "--k", "3",
               "--out-dir", str(out / "served"), "--overwrite", "--group-by", "file"]
        for m in methods:
            cmd += ["--method", m]
        subprocess.run(cmd, check=False, env=os.environ.copy())
        served = json.loads((out / "served" / "results.json").read_text())
        rows = {row["method"]: row["stats"]["overall"] for row in served.get("rows", [])}
        for name, r in results["arms"].items():
            st = rows.get(_slug(name))
            r["served"] = ({"tau": st["tau"], "per_position": st["per_position_acceptance"], "drafts": st["drafts"],
                            "tok_per_s": st["tok_per_s"]} if st else None)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lr = results.get("learning_rate", a.learning_rate)
    lines = [f"# Head-training ablations ({results['steps']} steps x batch {results['batch']}, base lr {lr:g}, same "
             "cached slice; offline = held-out conversations, served = vLLM on dev prompts)", "",
             "| arm | offline pos 1 / 2 / 3 | served pos 1 / 2 / 3 | served τ | eval loss |", "| --- | --- | --- | --- | --- |"]
    for name, r in results["arms"].items():
        off = " / ".join(f"{100 * (r['offline'][k] or 0):.1f}" for k in (1, 2, 3))
        sv = r.get("served")
        srv = " / ".join(f"{100 * x:.1f}" for x in sv["per_position"]) if sv else "–"
        tau = f"{sv['tau']:.2f}" if sv else "–"
        lines.append(f"| {name} | {off} % | {srv} % | {tau} | {r['eval_loss']:.3f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
