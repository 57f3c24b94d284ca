#!/bin/bash
# Served acceptance of candidate heads: no speculation + one fastmtp engine per head (en/zh 8k maps, K=3), the 20
# benchmark prompts, greedy (tau and acceptance are deterministic per head: one round is enough for them; ROUNDS=N
# for speed), every output checked against no speculation, overlap with every training prompt set checked.
# usage: serve_heads.sh OUT NAME=MODEL_DIR ...   (the results scripts of relabelled_sharegpt/ and fourth_epoch/)
# QUESTIONS=FILE: held-out prompts instead (Spec-Bench lines, e.g. held-out conversations' user turns; grouped by
# category, PER_CATEGORY=10 each). Their prompts come from the prompt files, so the overlap check is against what
# the heads trained on: every conversation of runs/pipeline/train.jsonl
set -euo pipefail
cd "$(dirname "$0")/../.."  # the checkout root
out=$1; shift
MJ='"draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}'
methods=(--method none)
for nm in "$@"; do
  methods+=(--method "${nm%%=*}={\"model\": \"${nm#*=}\", \"speculative_config\": {\"method\": \"fastmtp\", $MJ}}")
done
for f in data/smollm2/prompts/*.jsonl.gz; do [ -f "${f%.gz}" ] || gunzip -k "$f"; done
if [[ -n "${QUESTIONS:-}" ]]; then
  inputs=(--questions "$QUESTIONS" --group-by category --per-category "${PER_CATEGORY:-10}"
          --training-prompts runs/pipeline/train.jsonl)
else
  inputs=(--group-by file --per-category 5 --training-prompts data/smollm2/prompts/*.jsonl)
fi
.venv/bin/python -m benchmarks.run --model runs/pipeline/smollm2-mimo --dtype float32 "${inputs[@]}" \
  --max-new-tokens 128 "${methods[@]}" --k 3 --headline-k 3 \
  --rounds "${ROUNDS:-1}" --out-dir "$out" --summary "$out/summary.json" --overwrite
