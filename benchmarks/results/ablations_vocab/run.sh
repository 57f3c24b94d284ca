#!/bin/bash
# Issue #10 item 5's missing arm: CE over the draft vocabulary (the en+zh 8k maps) against CE over the full
# 49,152-id vocabulary, one change on the base recipe, from the shipped head, same cached slice, same steps.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root
PY=.venv/bin/python
W=runs/ablv
mkdir -p $W
# the curated corpus and its held-out split (scripts/pipeline.sh's curate stage)
for f in data/smollm2/distill*.jsonl.gz; do [ -f "${f%.gz}" ] || gunzip -k "$f"; done
$PY -m training.curate --in data/smollm2/distill.jsonl $(ls data/smollm2/distill-*.jsonl) --out runs/pipeline/curated.jsonl \
  --keep-truncated --dedup-on conversation --overwrite
$PY -m training.split_holdout runs/pipeline/curated.jsonl --train runs/pipeline/train.jsonl --eval runs/pipeline/eval.jsonl --every 25
# a fixed slice: 800 training and 150 held-out conversations drawn with seed 0 from every set; 20 dev prompts that
# were never distilled (the first 5 per category of prompts/mixed.jsonl lines 12,289-15,862), not the benchmark's
$PY - <<'PY'
import json, random
def sample(src, n, dst):
    lines = open(src, encoding="utf-8").readlines()
    random.Random(0).shuffle(lines)
    open(dst, "w", encoding="utf-8").writelines(lines[:n])
sample("runs/pipeline/train.jsonl", 800, "runs/ablv/train-slice.jsonl")
sample("runs/pipeline/eval.jsonl", 150, "runs/ablv/eval-slice.jsonl")
import gzip
rows = gzip.open("data/smollm2/prompts/mixed.jsonl.gz", "rt", encoding="utf-8").readlines()[12288:]
per, out = {}, []
for line in rows:
    q = json.loads(line)
    if len(per.setdefault(q["category"], [])) < 5:
        per[q["category"]].append(q); out.append(line)
open("runs/ablv/dev.jsonl", "w", encoding="utf-8").writelines(out)
PY
$PY -m benchmarks.ablations --model runs/pipeline/smollm2-mimo --train-file $W/train-slice.jsonl --cache $W/cache-train \
  --eval-file $W/eval-slice.jsonl --eval-cache $W/cache-eval --eval-examples 150 \
  --maps vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt --steps 100 --batch 8 --learning-rate 5e-4 \
  --arms base full-vocabulary-ce --dev-questions $W/dev.jsonl --out benchmarks/results/ablations_vocab --work $W
