#!/bin/bash
# A thirteenth set (self4: the model's own first words, seed 3) trained on with a replay sample instead of every
# earlier chunk: the twelve chunks' state caches take ~2 h to rebuild on a fresh 2-core machine (~740 tok/s), the
# new set's and a 1/8 sample of the old twelve ~40 min. Epochs from the shipped head (ep14) over
# train-self4-chunk0 + train-replay12 (lr 2e-4, ../fourth_epoch/run.sh's recipe otherwise).
# usage: run.sh caches | train | control | offline | served   (after `bash scripts/pipeline.sh curate`; the prompt
#        file is the last training.self_prompts command of `bash scripts/pipeline.sh prompts`,
#        data/smollm2/prompts/self4.jsonl.gz)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
R=runs/pipeline
C=$R/cache
M=$R/smollm2-mimo  # benchmarks.demo_model --head trained: the shipped head (ep14)
SETS="first105 public public2 public3 broad2 code3 public5 self self2 self3 self4"
OLD="public-chunk0 public2-chunk0 public2-chunk1 chunk2-zhmath broad2-chunk0 public3-chunk0 public3-chunk1 code3-chunk0 public5-chunk0 self-chunk0 self2-chunk0 self3-chunk0"
case $1 in
caches)  # the pipeline's chunker and per-set held-out files; the new chunk, the held-out sets, the replay sample
  CHUNKS="self4-chunk0" EVALS="first105 self4 self3 public public2 public3 broad2 code3 public5 self self2" \
    bash scripts/pipeline.sh cache
  # the replay sample: every 8th conversation of each chunk ep14 trained on (of train-chunk2-zhmath, ep14's Chinese
  # and math slice of train-chunk2 (../fourth_epoch/run.sh caches), every 2nd: the only Chinese training text)
  $PY - $OLD <<'PYS'
import json, random, sys
rows = []
for c in sys.argv[1:]:
    path = f"runs/pipeline/train-{c}.jsonl"
    if c == "chunk2-zhmath":
        src = [l for l in open("runs/pipeline/train-chunk2.jsonl", encoding="utf-8")]
        math = [l for l in src if json.loads(l)["category"] == "math"][:300]
        lines = [l for l in src if json.loads(l)["category"] == "chinese" or l in math]
        open(path, "w", encoding="utf-8").writelines(lines)
    lines = open(path, encoding="utf-8").readlines()
    every = 2 if c == "chunk2-zhmath" else 8
    take = random.Random(f"replay12:{c}").sample(range(len(lines)), len(lines) // every)
    rows += [lines[i] for i in sorted(take)]
    print(c, len(lines), "->", len(take), file=sys.stderr)
open("runs/pipeline/train-replay12.jsonl", "w", encoding="utf-8").writelines(rows)
print("train-replay12", len(rows), file=sys.stderr)
PYS
  $PY -m training.cache_states --model_path $M --data $R/train-replay12.jsonl --out $C/train-replay12 --max_seq_len 1024 ;;
train)  # START=DIR SEED=N OUT=DIR: runs/ft31 from the shipped head (seed 31), runs/ft32 from runs/ft31 (seed 32), ...
  CHUNKS="self4-chunk0 replay12" LR=2e-4 START=${START:-$M} SEED=${SEED:-31} OUT=${OUT:-runs/ft31} \
    bash benchmarks/results/fourth_epoch/run.sh train ;;
control)  # the same epoch from ep14 over train-replay12 alone (runs/ft33: what the replay sample does without the
          # new set) and over train-self4-chunk0 alone (runs/ft34: the new set without replay)
  CHUNKS="replay12" LR=2e-4 START=$M SEED=31 OUT=runs/ft33 bash benchmarks/results/fourth_epoch/run.sh train
  CHUNKS="self4-chunk0" LR=2e-4 START=$M SEED=31 OUT=runs/ft34 bash benchmarks/results/fourth_epoch/run.sh train ;;
offline)  # ../offline_heads.sh: the shipped head and the new ones on every held-out set (ARMS=NAME=DIR ...)
  mkdir -p runs/off-self4
  for arm in ${ARMS:-ep14=$M ep16=runs/ft32/final ep15=runs/ft31/final replay=runs/ft33/final new=runs/ft34/final}; do
    bash benchmarks/results/offline_heads.sh runs/off-self4 "${arm%%=*}" "${arm#*=}" $SETS
  done | tee runs/off-self4/lines.txt
  $PY benchmarks/results/offline_json.py runs/off-self4/lines.txt benchmarks/results/replay_self4/offline.json \
    --note "offline acceptance % at draft positions 1/2/3 on held-out sets, exact fp32, serving form, each \
conversation over its own map (../offline_heads.sh); ep14 = the shipped head (../more_self_prompts/), ep15/ep16 = \
one/two epochs from it over train-self4-chunk0 + train-replay12 (run.sh train), replay = one epoch over \
train-replay12 alone, new = over train-self4-chunk0 alone (run.sh control)" ;;
served)  # one round each, none + the heads (ARMS), every output checked against none: the 20 benchmark prompts
         # (-> served/) and 65 held-out prompts (-> served-dev/): the first 10 held-out conversations (their user
         # turns) of eval-public, -public5, -code3, -broad2, -self3, -self4 and of eval.jsonl's Chinese ones (turn 1)
         # with no turn in any training conversation (a ShareGPT chat held out of public5 may share its first turn
         # with public/public2/public3, a template task its follow-up: benchmarks.dev_questions --not-in skips
         # them; only 5 of public5's 39 have none)
  ARMS=${ARMS:-ep14=$M ep16=runs/ft32/final}
  bash benchmarks/results/serve_heads.sh runs/serve-self4 $ARMS
  $PY -m benchmarks.dev_questions benchmarks/results/replay_self4/dev-questions.jsonl --per-set 10 \
    $(for s in public public5 code3 broad2 self3 self4; do echo "--set $s=runs/pipeline/eval-$s.jsonl"; done) \
    --set chinese=runs/pipeline/eval.jsonl:chinese --not-in runs/pipeline/train.jsonl
  QUESTIONS=benchmarks/results/replay_self4/dev-questions.jsonl bash benchmarks/results/serve_heads.sh \
    runs/serve-self4-dev $ARMS ;;
esac
