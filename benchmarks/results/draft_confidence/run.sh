#!/usr/bin/env bash
# Draft-confidence stopping ("draft_confidence" in the fastmtp config) beside the head alone: the shipped head,
# greedy, batch 1, CPU float32, its 8k maps.
# usage: run.sh dev   -- the threshold (and K) chosen here: the 20 never-distilled training-kind prompts of
#                        ../prompt_lookup/ (the first 5 per category of prompts/mixed.jsonl lines 12,289-15,862)
#        run.sh devload -- under load on never-distilled prompts (8 per category of the same lines): none, the
#                        head alone and two thresholds, 4 and 16 requests in flight
#        run.sh load  -- the chosen threshold (CONF) under load on the benchmark prompts: none, the head alone and
#                        + CONF, 1, 4 and 16 requests in flight (as ../prompt_lookup/run.sh load)
# The issue's engines with the chosen threshold beside them, on the benchmark prompts: scripts/pipeline.sh bench
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
M=runs/pipeline/smollm2-mimo   # benchmarks.demo_model --head trained (the shipped head)
OUT=${OUT:-benchmarks/results/draft_confidence}
MAPS='"draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}'
FM="{\"method\": \"fastmtp\", $MAPS"
conf() {  # conf THRESHOLD K -> a --method argument
  echo "fastmtp-c$1-k$2={\"speculative_config\": $FM, \"draft_confidence\": $1, \"num_speculative_tokens\": $2}}"
}
case $1 in
dev)
  zcat data/smollm2/prompts/mixed.jsonl.gz | tail -n +12289 > runs/dev-undistilled.jsonl
  $PY -m benchmarks.run --model $M --dtype float32 --questions runs/dev-undistilled.jsonl --group-by category \
    --per-category 5 --max-new-tokens 128 --method none --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "$(conf 0.1 3)" --method "$(conf 0.2 3)" --method "$(conf 0.3 3)" --method "$(conf 0.45 3)" \
    --method "$(conf 0.2 5)" --method "$(conf 0.3 5)" \
    --k 3 --headline-k 3 --rounds "${ROUNDS:-1}" --out-dir $OUT/dev --summary $OUT/dev/summary.json --overwrite ;;
devload)
  zcat data/smollm2/prompts/mixed.jsonl.gz | tail -n +12289 > runs/dev-undistilled.jsonl
  $PY -m benchmarks.concurrency --model $M --dtype float32 --questions runs/dev-undistilled.jsonl --per-category 8 \
    --method none --method "fastmtp={\"speculative_config\": $FM}}" --method "$(conf 0.2 3)" --method "$(conf 0.4 3)" \
    --k 3 --levels 4 16 --waves 2 --min-requests 8 --max-new-tokens 64 --out-dir $OUT/devload --overwrite ;;
load)
  c=${CONF:?set CONF=threshold as chosen on the dev prompts}
  $PY -m benchmarks.concurrency --model $M --dtype float32 --method none \
    --method "fastmtp={\"speculative_config\": $FM}}" --method "$(conf $c 3)" \
    --k 3 --levels 1 4 16 --waves 2 --min-requests 8 --max-new-tokens 64 \
    --training-prompts data/smollm2/prompts/{mixed,broad,broad2,public,public2,public3,public4,code3}.jsonl \
    --out-dir $OUT/load --overwrite ;;
esac
