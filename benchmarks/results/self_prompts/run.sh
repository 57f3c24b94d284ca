#!/bin/bash
# A tenth and eleventh set: prompts the model writes itself (training.self_prompts, Magpie), the source of new
# prompts that the bundled collections no longer are. One serving-form epoch from the shipped head over the nine
# chunks it trained on + the new sets' training conversations, against the same epoch without them (runs/ft26,
# ../resampled_answers/: lr 2e-4, seed 26, ../fourth_epoch/run.sh's recipe otherwise).
# usage: run.sh distill | caches | train | offline   (the two prompt files: the last two training.self_prompts
#        commands of `bash scripts/pipeline.sh prompts`, already committed in data/smollm2/prompts/)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
NINE="public-chunk0 public2-chunk0 public2-chunk1 chunk2-zhmath broad2-chunk0 public3-chunk0 public3-chunk1 code3-chunk0 public5-chunk0"
case $1 in
distill)  # the first 1,500 of each (self.jsonl's other 1,500 for a later chunk), then the pipeline's curation of all sets
  PROMPT_SET=self LIMIT=1500 bash scripts/pipeline.sh distill
  PROMPT_SET=self2 LIMIT=1500 bash scripts/pipeline.sh distill
  bash scripts/pipeline.sh curate ;;
caches)  # the pipeline's chunker and per-set held-out files; caches for the two new sets only
  CHUNKS="self-chunk0 self2-chunk0" EVALS="self self2" bash scripts/pipeline.sh cache ;;
train)  # START=DIR SEED=N OUT=DIR: a second epoch over the same chunks (runs/ft28 from runs/ft27, seed 27)
  CHUNKS="$NINE self-chunk0 self2-chunk0" LR=2e-4 START=${START:-runs/ft25/final} SEED=${SEED:-26} OUT=${OUT:-runs/ft27} \
    bash benchmarks/results/fourth_epoch/run.sh train ;;
offline)  # ../offline_heads.sh; ep10 and nine on the seven older sets are in ../resampled_answers/offline.json
  mkdir -p runs/off-self
  { for arm in ep10=runs/ft25/final nine=runs/ft26/final; do
      bash benchmarks/results/offline_heads.sh runs/off-self "${arm%%=*}" "${arm#*=}" self self2
    done
    for arm in self=runs/ft27/final self-ep2=runs/ft28/final; do
      bash benchmarks/results/offline_heads.sh runs/off-self "${arm%%=*}" "${arm#*=}" \
        first105 public public2 public3 broad2 code3 public5 self self2
    done; } | tee runs/off-self/lines.txt
  $PY benchmarks/results/offline_json.py runs/off-self/lines.txt benchmarks/results/self_prompts/offline.json \
    --take benchmarks/results/resampled_answers/offline.json:ep10 --take benchmarks/results/resampled_answers/offline.json:nine \
    --drop-set trainpublic --note "offline acceptance % at draft positions 1/2/3 on held-out sets, exact fp32, serving \
form, each conversation over its own map (../offline_heads.sh); ep10 = the shipped head, nine = one epoch from it \
over its nine chunks (../resampled_answers/), self = the same epoch + train-self-chunk0 + train-self2-chunk0 \
(run.sh), self-ep2 = a second such epoch from self; ep10 and nine on the seven older sets from \
../resampled_answers/offline.json"
  ;;
esac
