#!/bin/bash
# A/B of the drafter change: step_profile none + fastmtp, code before (cd76518) and after (d98f0f6), alternating
set -euo pipefail
cd "$(dirname "$0")/../../.."
M=runs/pipeline/smollm2-mimo
FM='{"method": "fastmtp", "draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}}'
for r in 1 2; do
  for v in before after; do
    if [ $v = before ]; then git checkout -q cd76518 -- vllm_fastmtp/; else git checkout -q d98f0f6 -- vllm_fastmtp/; fi
    .venv/bin/python -m benchmarks.step_profile --model $M --dtype float32 --method none \
      --method "fastmtp={\"speculative_config\": $FM}" --k 3 --per-category 2 --max-new-tokens 128 \
      --out-dir runs/drafter_linear/$v$r --overwrite > runs/drafter_linear-$v$r.log 2>&1
    echo "$v$r done $(date +%T)"
  done
done
git checkout -q d98f0f6 -- vllm_fastmtp/
# after the change: the issue's five engines in one run, three interleaved rounds (as ../prompt_lookup/run.sh full)
PY=.venv/bin/python
MAPS='"draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}'
FM="{\"method\": \"fastmtp\", $MAPS"
NGRAM='ngram={"speculative_config": {"method": "ngram", "prompt_lookup_max": 3, "prompt_lookup_min": 1}}'
[ -d runs/vanilla-k1 ] || $PY -m benchmarks.demo_model runs/vanilla-k1 --dtype float32 \
  --head benchmarks/demo_head/smollm2-135m-vanilla-style-k1.safetensors
$PY -m benchmarks.run --model $M --dtype float32 --group-by file --per-category 5 --max-new-tokens 128 \
  --method none --method "$NGRAM" --method "vanilla-style={\"model\": \"runs/vanilla-k1\", \"speculative_config\": $FM}}" \
  --method "fastmtp={\"speculative_config\": $FM}}" \
  --method "fastmtp+prefer={\"speculative_config\": $FM, \"prompt_lookup\": \"prefer\"}}" \
  --k 3 --headline-k 3 \
  --training-prompts data/smollm2/prompts/{mixed,broad,broad2,public,public2,public3,public4}.jsonl \
  --rounds 3 --out-dir benchmarks/results/drafter_linear/full --summary benchmarks/results/drafter_linear/full/summary.json --overwrite
