#!/bin/bash
# The ninth set (public5: ShareGPT chats' first two user turns, the second a follow-up to the model's own answer,
# distilled with --after-cut continue) beside the eight chunks the shipped head trained on: one serving-form epoch
# from the shipped (eighth-epoch) head, the recipe of ../fourth_epoch/run.sh.
# usage: run.sh caches | train | offline NAME MODEL_DIR   (EVALS=... for fewer sets)
# caches: after `PROMPT_SET=public5 bash scripts/pipeline.sh distill` and `bash scripts/pipeline.sh curate`
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root; everything it writes goes under runs/
PY=.venv/bin/python
R=runs/pipeline
C=$R/cache
M=$R/smollm2-mimo  # benchmarks.demo_model --head trained: the shipped head
CHUNKS="public-chunk0 public2-chunk0 public2-chunk1 chunk2-zhmath broad2-chunk0 public3-chunk0 public3-chunk1 code3-chunk0 public5-chunk0"
EVALS="${EVALS:-first105 public public2 public3 broad2 code3 public5}"
case $1 in
caches)
  # the pipeline's chunker (scripts/pipeline.sh cache) without caching every chunk it writes: only the new one
  $PY - <<'PYS'
import json
rows = [l for l in open("runs/pipeline/train.jsonl", encoding="utf-8") if json.loads(l)["id"].startswith("public5.jsonl:")]
open("runs/pipeline/train-public5-chunk0.jsonl", "w", encoding="utf-8").write("".join(rows))
ev = [l for l in open("runs/pipeline/eval.jsonl", encoding="utf-8") if json.loads(l)["id"].startswith("public5.jsonl:")]
open("runs/pipeline/eval-public5.jsonl", "w", encoding="utf-8").write("".join(ev))
print(len(rows), "training,", len(ev), "held-out conversations")
PYS
  $PY -m training.cache_states --model_path $M --data $R/train-public5-chunk0.jsonl --out $C/train-public5-chunk0 --max_seq_len 1024 --no_progress
  $PY -m training.cache_states --model_path $M --data $R/eval-public5.jsonl --out $C/eval-public5 --max_seq_len 1024 --no_progress ;;
train)
  # START=DIR SEED=N OUT=DIR: ../fourth_epoch/run.sh's recipe over these nine chunks
  CHUNKS="$CHUNKS" START="${START:-$M}" SEED="${SEED:-24}" OUT="${OUT:-runs/ft24}" bash benchmarks/results/fourth_epoch/run.sh train ;;
offline)  # ../offline_heads.sh
  bash benchmarks/results/offline_heads.sh runs/off24 "$2" "$3" $EVALS ;;
esac
