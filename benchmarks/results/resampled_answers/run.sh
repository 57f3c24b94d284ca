#!/bin/bash
# Is the head short of distinct answer tokens or of distinct prompts? (twenty-second session)
# The shipped head accepts 64.4 / 41.4 / 26.6 % on 82 of its own training conversations of the public set and
# 58.1 / 33.9 / 20.1 % on the set's 82 held-out ones: it memorises. New prompts are used up (the two wheels), so
# this asks whether new answers to prompts it has already trained on help: 1,000 of train-public-chunk0's prompts
# answered again (another sampling seed), the 832 whose new answer survives curation, added as a tenth chunk
# (resampled), against the same 832 conversations' old answers added as the tenth chunk (oldsame: one more pass
# over text it has seen), and against the nine chunks alone (runs/ft26). Plus a regulariser on the nine chunks:
# EAGLE's feature noise (--hidden_noise 0.2). Every arm: one serving-form epoch from the shipped head, lr 2e-4,
# seed 26, ../fourth_epoch/run.sh's recipe otherwise.
# usage: run.sh data | train | offline   (after ../follow_ups/run.sh caches; runs/ft26 = the nine-chunk arm:
#        LR=2e-4 START=runs/ft25/final SEED=26 OUT=runs/ft26 bash benchmarks/results/follow_ups/run.sh train)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
R=runs/pipeline
M=$R/smollm2-mimo
NINE="public-chunk0 public2-chunk0 public2-chunk1 chunk2-zhmath broad2-chunk0 public3-chunk0 public3-chunk1 code3-chunk0 public5-chunk0"
case $1 in
data)
  mkdir -p runs/resample
  $PY - <<'PYS'
import json
rows = [json.loads(l) for l in open("runs/pipeline/train-public-chunk0.jsonl", encoding="utf-8")][:1000]
with open("runs/resample/prompts.jsonl", "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps({"question_id": r["orig_id"], "category": r["category"],
                            "turns": [m["content"] for m in r["messages"] if m["role"] == "user"]}, ensure_ascii=False) + "\n")
PYS
  $PY -m training.distill --model $M --prompts runs/resample/prompts.jsonl --out runs/resample/distill.jsonl --seed 1 \
    --max-tokens 256 --dtype bfloat16 --enforce-eager --max-model-len 1024 --chunk-size 512
  $PY -m training.curate --in runs/resample/distill.jsonl --out runs/resample/curated.jsonl --keep-truncated \
    --dedup-on conversation --overwrite
  $PY - <<'PYS'
import json
new = {json.loads(l)["orig_id"]: l for l in open("runs/resample/curated.jsonl", encoding="utf-8")}
old = [l for l in open("runs/pipeline/train-public-chunk0.jsonl", encoding="utf-8")][:1000]
old = [l for l in old if json.loads(l)["orig_id"] in new]
open("runs/pipeline/train-resampled.jsonl", "w", encoding="utf-8").write("".join(new[json.loads(l)["orig_id"]] for l in old))
open("runs/pipeline/train-oldsame.jsonl", "w", encoding="utf-8").write("".join(old))
print(len(old), "prompts with a curated new answer")
PYS
  # 82 training conversations of the public set in the held-out set's category mix (65 ShareGPT, 17 GSM8K):
  # offline acceptance on text the head has trained on, beside eval-public's
  $PY - <<'PYS'
import collections, json
need = collections.Counter(json.loads(l)["category"] for l in open("runs/pipeline/eval-public.jsonl", encoding="utf-8"))
out = []
for l in open("runs/pipeline/train-public-chunk0.jsonl", encoding="utf-8"):
    c = json.loads(l)["category"]
    if need[c] > 0:
        out.append(l)
        need[c] -= 1
open("runs/pipeline/eval-trainpublic.jsonl", "w", encoding="utf-8").write("".join(out))
PYS
  for c in train-resampled train-oldsame eval-trainpublic; do
    $PY -m training.cache_states --model_path $M --data $R/$c.jsonl --out $R/cache/$c --max_seq_len 1024 --no_progress
  done ;;
train)
  for arm in resampled oldsame; do
    CHUNKS="$NINE $arm" LR=2e-4 START=runs/ft25/final SEED=26 OUT=runs/ft26-$arm bash benchmarks/results/fourth_epoch/run.sh train
  done
  CHUNKS="$NINE" LR=2e-4 START=runs/ft25/final SEED=26 OUT=runs/ft26-noise EXTRA="--hidden_noise 0.2" \
    bash benchmarks/results/fourth_epoch/run.sh train ;;
offline)  # ../offline_heads.sh per arm; the table as offline.json here
  mkdir -p runs/off-resample
  for arm in ep10=runs/ft25/final nine=runs/ft26/final resampled=runs/ft26-resampled/final \
             oldsame=runs/ft26-oldsame/final noise=runs/ft26-noise/final; do
    bash benchmarks/results/offline_heads.sh runs/off-resample "${arm%%=*}" "${arm#*=}" \
      trainpublic first105 public public2 public3 broad2 code3 public5
  done | tee runs/off-resample/lines.txt
  $PY benchmarks/results/offline_json.py runs/off-resample/lines.txt benchmarks/results/resampled_answers/offline.json \
    --note "offline acceptance % at draft positions 1/2/3, exact fp32, serving form, each conversation over its own \
map (../offline_heads.sh); trainpublic = 82 of the head's own training conversations of the public set \
(seen), the other sets held out (../follow_ups/offline.json names them); ep10 = the shipped head (its held-out \
numbers are ../follow_ups/offline.json's, reproduced to the digit for public here), every other arm one epoch from \
it (run.sh)"
  ;;
esac
