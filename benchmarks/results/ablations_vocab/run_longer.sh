#!/bin/bash
# The same question at the shipped recipe's form (serving) and 4x the data: 3,200 training conversations (the
# slice of run.sh and the next 2,400 of the same seed-0 shuffle), one epoch (400 steps x 8), from the shipped head.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root; run.sh first (curated corpus, eval slice, dev prompts)
PY=.venv/bin/python
W=runs/ablv
$PY - <<'PY'
import random
lines = open("runs/pipeline/train.jsonl", encoding="utf-8").readlines()
random.Random(0).shuffle(lines)
assert open("runs/ablv/train-slice.jsonl", encoding="utf-8").readlines() == lines[:800]
for i in (1, 2, 3):
    open(f"runs/ablv/train-slice{i + 1}.jsonl", "w", encoding="utf-8").writelines(lines[800 * i: 800 * (i + 1)])
PY
T=$W/train-slice.jsonl,$W/train-slice2.jsonl,$W/train-slice3.jsonl,$W/train-slice4.jsonl
C=$W/cache-train,$W/cache-train2,$W/cache-train3,$W/cache-train4
$PY -m benchmarks.ablations --model runs/pipeline/smollm2-mimo --train-file $T --cache $C \
  --eval-file $W/eval-slice.jsonl --eval-cache $W/cache-eval --eval-examples 150 \
  --maps vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt --steps 400 --batch 8 --learning-rate 5e-4 \
  --arms serving-attention-form serving-form--full-vocabulary-ce --dev-questions $W/dev.jsonl \
  --out benchmarks/results/ablations_vocab/longer --work $W/longer
# equal wall-clock: the draft-vocabulary arm for 920 steps (2.3 passes over the same 3,200 conversations), the time
# the full-vocabulary arm took for 400
$PY -m benchmarks.ablations --model runs/pipeline/smollm2-mimo --train-file $T --cache $C \
  --eval-file $W/eval-slice.jsonl --eval-cache $W/cache-eval --eval-examples 150 \
  --maps vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt --steps 920 --batch 8 --learning-rate 5e-4 \
  --arms serving-attention-form --dev-questions $W/dev.jsonl \
  --out benchmarks/results/ablations_vocab/equal_time --work $W/equal_time
