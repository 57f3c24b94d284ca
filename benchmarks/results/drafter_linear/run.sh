#!/bin/bash
# A/B of the drafter change: step_profile none + fastmtp, code before (cd76518) and after (d98f0f6), alternating
set -euo pipefail
cd "$(dirname "$0")/../../.."
M=runs/pipeline/smollm2-mimo
# the A/B swaps vllm_fastmtp/ between the two commits and puts HEAD's back at the end: refuse to touch local edits
git diff --quiet HEAD -- vllm_fastmtp/ || { echo "vllm_fastmtp/ has uncommitted changes: commit or stash them first" >&2; exit 1; }
trap 'git checkout -q HEAD -- vllm_fastmtp/' EXIT
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
git checkout -q HEAD -- vllm_fastmtp/
# before1..after2/ here hold each run's results.json and table.md (the engine logs stay in runs/)
# after the change: the issue's five engines in one run, three interleaved rounds (../prompt_lookup/run.sh full)
OUT=benchmarks/results/drafter_linear bash benchmarks/results/prompt_lookup/run.sh full
# K = 2 against 3 on the dev prompts (never distilled; not the benchmark's), the head alone and + prefer, two
# interleaved rounds: does the dearer verification on this machine move the best K?
PY=.venv/bin/python
FMV='{"method": "fastmtp", "draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}'
zcat data/smollm2/prompts/mixed.jsonl.gz | tail -n +12289 > runs/dev-undistilled.jsonl
$PY -m benchmarks.run --model $M --dtype float32 --questions runs/dev-undistilled.jsonl --group-by category \
  --per-category 5 --max-new-tokens 128 --method none --method "fastmtp={\"speculative_config\": $FMV}}" \
  --method "fastmtp+prefer={\"speculative_config\": $FMV, \"prompt_lookup\": \"prefer\"}}" \
  --k 2 3 --headline-k 3 --rounds 2 --out-dir benchmarks/results/drafter_linear/dev_k --overwrite
