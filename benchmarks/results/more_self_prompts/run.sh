#!/bin/bash
# A twelfth set: 3,000 more requests the model writes itself (training.self_prompts, seed 2, 24 other opening words:
# questions and editing/analysis tasks), distilled whole, and further serving-form epochs from the shipped head
# (runs/ft28, ../self_prompts/) over every chunk it trained on + the new one (lr 2e-4, ../fourth_epoch/run.sh's
# recipe otherwise).
# usage: run.sh distill | caches | train | offline | served   (the prompt file: the last training.self_prompts command of
#        `bash scripts/pipeline.sh prompts`, committed as data/smollm2/prompts/self3.jsonl.gz)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
M=runs/pipeline/smollm2-mimo
ELEVEN="public-chunk0 public2-chunk0 public2-chunk1 chunk2-zhmath broad2-chunk0 public3-chunk0 public3-chunk1 code3-chunk0 public5-chunk0 self-chunk0 self2-chunk0"
SETS="first105 public public2 public3 broad2 code3 public5 self self2 self3"
case $1 in
distill)  # all 3,000, then the pipeline's curation of every set (the earlier sets' records are unchanged by it)
  PROMPT_SET=self3 bash scripts/pipeline.sh distill
  bash scripts/pipeline.sh curate ;;
caches)  # the pipeline's chunker and per-set held-out files; caches for the new set only (3,000 prompt lines: one chunk)
  CHUNKS="self3-chunk0" EVALS="self3" bash scripts/pipeline.sh cache ;;
train)  # START=DIR SEED=N OUT=DIR: runs/ft29 from runs/ft28 (seed 28), runs/ft30 from runs/ft29 (seed 29)
  CHUNKS="$ELEVEN self3-chunk0" LR=2e-4 START=${START:-runs/ft28/final} SEED=${SEED:-28} OUT=${OUT:-runs/ft29} \
    bash benchmarks/results/fourth_epoch/run.sh train ;;
offline)  # ../offline_heads.sh: the new heads on every held-out set, the shipped head on the new one (its other
          # sets: self-ep2 in ../self_prompts/offline.json, measured the same way)
  mkdir -p runs/off-self3
  { bash benchmarks/results/offline_heads.sh runs/off-self3 ep12 runs/ft28/final self3
    for arm in ${ARMS:-ep13=runs/ft29/final ep14=runs/ft30/final}; do
      bash benchmarks/results/offline_heads.sh runs/off-self3 "${arm%%=*}" "${arm#*=}" $SETS
    done; } | tee runs/off-self3/lines.txt
  $PY benchmarks/results/offline_json.py runs/off-self3/lines.txt benchmarks/results/more_self_prompts/offline.json \
    --take benchmarks/results/self_prompts/offline.json:self-ep2=ep12 --note "offline acceptance % at draft positions \
1/2/3 on held-out sets, exact fp32, serving form, each conversation over its own map (../offline_heads.sh); ep12 = \
the shipped head before (runs/ft28, ../self_prompts/), ep13/ep14 = one/two further epochs over its eleven chunks + \
train-self3-chunk0 (run.sh train)"
  ;;
served)  # one round each, none + both heads, every output checked against none: the 20 benchmark prompts
         # (../serve_heads.sh -> served/) and 60 held-out prompts (-> served-dev/): the first 10 conversations of
         # eval-public, -public5, -code3, -broad2, -self3 (their user turns) and of eval.jsonl's Chinese ones (turn 1)
  bash benchmarks/results/serve_heads.sh runs/serve24 ep12=runs/ft28/final ep14=runs/ft30/final
  # (no training-overlap check: 10 of these share a turn with training data, see README; ../replay_self4/ skips them)
  $PY -m benchmarks.dev_questions benchmarks/results/more_self_prompts/served-dev/questions.jsonl --per-set 10 \
    $(for s in public public5 code3 broad2 self3; do echo "--set $s=runs/pipeline/eval-$s.jsonl"; done) \
    --set chinese=runs/pipeline/eval.jsonl:chinese
  MJ='"draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}'
  $PY -m benchmarks.run --model $M --dtype float32 --questions benchmarks/results/more_self_prompts/served-dev/questions.jsonl \
    --group-by category --per-category 10 --max-new-tokens 128 --method none \
    --method "ep12={\"model\": \"runs/ft28/final\", \"speculative_config\": {\"method\": \"fastmtp\", $MJ}}" \
    --method "ep14={\"model\": \"runs/ft30/final\", \"speculative_config\": {\"method\": \"fastmtp\", $MJ}}" \
    --k 3 --headline-k 3 --out-dir runs/serve24-dev --summary runs/serve24-dev/summary.json --overwrite ;;
esac
