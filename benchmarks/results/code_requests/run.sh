#!/bin/bash
# The sixteenth set (self7: 518 training conversations of code requests the model wrote itself, 89,112 answer
# tokens; data/smollm2/README.md) on this 2-core AVX2 machine, where only a small new set can be cached and trained
# within a session (~150 tok/s to cache): does it give code3's held-out completions what the other self-written sets
# did not (../replay_self4/), and at what learning rate does a lone new set cost the older held-out sets least?
# One epoch from the shipped head (ep14) over train-self7-chunk0 alone, ../fourth_epoch/run.sh's recipe otherwise.
# usage: run.sh caches | train | offline   (after `bash scripts/pipeline.sh curate`)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
M=runs/pipeline/smollm2-mimo  # benchmarks.demo_model --head trained: the shipped head (ep14)
SETS="first105 code3 self7 public broad2 self6"
case $1 in
caches)  # the new chunk and the held-out sets (first105's cache is the pipeline's)
  CHUNKS="self7-chunk0" EVALS="code3 self7 public broad2 self6" bash scripts/pipeline.sh cache ;;
train)  # lr 2e-4 (../replay_self4/'s) and 5e-5 (a quarter of it), the same seed
  CHUNKS="self7-chunk0" LR=2e-4 START=$M SEED=46 OUT=runs/ft46a bash benchmarks/results/fourth_epoch/run.sh train
  CHUNKS="self7-chunk0" LR=5e-5 START=$M SEED=46 OUT=runs/ft46b bash benchmarks/results/fourth_epoch/run.sh train ;;
offline)  # ../offline_heads.sh: the shipped head and both new ones on every held-out set
  mkdir -p runs/off46
  for arm in ${ARMS:-ep14=$M lr2e-4=runs/ft46a/final lr5e-5=runs/ft46b/final}; do
    bash benchmarks/results/offline_heads.sh runs/off46 "${arm%%=*}" "${arm#*=}" $SETS
  done | tee runs/off46/lines.txt
  $PY benchmarks/results/offline_json.py runs/off46/lines.txt benchmarks/results/code_requests/offline.json \
    --note "offline acceptance % at draft positions 1/2/3 on held-out sets, exact fp32, serving form, each \
conversation over its own map (../offline_heads.sh); ep14 = the shipped head, lr2e-4 / lr5e-5 = one epoch from it \
over train-self7-chunk0 alone at that peak learning rate (run.sh train)" ;;
*) echo "usage: run.sh caches | train | offline" >&2; exit 2 ;;
esac
