#!/usr/bin/env bash
# The opt-in "prompt_lookup" merge beside the head alone, the shipped head, greedy, batch 1, K=3, CPU float32.
# usage: run.sh dev    -- the policy is chosen here: 20 prompts never distilled (the first 5 per category of
#                         prompts/mixed.jsonl lines 12,289-15,862; template prompts like the training ones)
#        run.sh bench  -- the chosen policy on the 20 benchmark prompts, beside none, ngram and the head alone
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
M=runs/pipeline/smollm2-mimo   # benchmarks.demo_model --head trained (the shipped head)
OUT=${OUT:-benchmarks/results/prompt_lookup}  # OUT=... writes a later session's rerun elsewhere
MAPS='"draft_vocab": {"maps": {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}}'
FM="{\"method\": \"fastmtp\", $MAPS"
NGRAM='ngram={"speculative_config": {"method": "ngram", "prompt_lookup_max": 3, "prompt_lookup_min": 1}}'
case $1 in
dev)
  zcat data/smollm2/prompts/mixed.jsonl.gz | tail -n +12289 > runs/dev-undistilled.jsonl
  $PY -m benchmarks.run --model $M --dtype float32 --questions runs/dev-undistilled.jsonl --group-by category \
    --per-category 5 --max-new-tokens 128 --method none --method "$NGRAM" \
    --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "fastmtp+agree={\"speculative_config\": $FM, \"prompt_lookup\": \"agree\"}}" \
    --method "fastmtp+prefer={\"speculative_config\": $FM, \"prompt_lookup\": \"prefer\"}}" \
    --k 3 --headline-k 3 --rounds "${ROUNDS:-1}" --out-dir $OUT/dev --summary $OUT/dev/summary.json --overwrite ;;
bench)
  policy=${POLICY:?set POLICY=agree or prefer, as chosen on the dev prompts}
  $PY -m benchmarks.run --model $M --dtype float32 --group-by file --per-category 5 --max-new-tokens 128 \
    --method none --method "$NGRAM" --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "fastmtp+$policy={\"speculative_config\": $FM, \"prompt_lookup\": \"$policy\"}}" \
    --k 3 --headline-k 3 \
    --training-prompts data/smollm2/prompts/{mixed,broad,broad2,public,public2,public3,public4,code3}.jsonl \
    --rounds "${ROUNDS:-3}" --out-dir $OUT/bench --summary $OUT/bench/summary.json --overwrite ;;
esac
# under load: run.sh load  -- closed loop at 1, 4 and 16 requests in flight, none / the head alone / + prefer
if [ "$1" = load ]; then
  $PY -m benchmarks.concurrency --model $M --dtype float32 --method none \
    --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "fastmtp+prefer={\"speculative_config\": $FM, \"prompt_lookup\": \"prefer\"}}" \
    --k 3 --levels 1 4 16 --waves 2 --min-requests 8 --max-new-tokens 64 \
    --training-prompts data/smollm2/prompts/{mixed,broad,broad2,public,public2,public3,public4,code3}.jsonl \
    --out-dir $OUT/load --overwrite
fi
# the issue's table in one run: run.sh full  -- none, ngram, the vanilla-style K=1 head (shipped beside the K=3
# one), the head alone and + prefer, three interleaved rounds
if [ "$1" = full ]; then
  [ -d runs/vanilla-k1 ] || $PY -m benchmarks.demo_model runs/vanilla-k1 --dtype float32 \
    --head benchmarks/demo_head/smollm2-135m-vanilla-style-k1.safetensors
  $PY -m benchmarks.run --model $M --dtype float32 --group-by file --per-category 5 --max-new-tokens 128 \
    --method none --method "$NGRAM" --method "vanilla-style={\"model\": \"runs/vanilla-k1\", \"speculative_config\": $FM}}" \
    --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "fastmtp+prefer={\"speculative_config\": $FM, \"prompt_lookup\": \"prefer\"}}" \
    --k 3 --headline-k 3 \
    --training-prompts data/smollm2/prompts/{mixed,broad,broad2,public,public2,public3,public4,code3}.jsonl \
    --rounds "${ROUNDS:-3}" --out-dir $OUT/full --summary $OUT/full/summary.json --overwrite
fi
# where a step goes on this machine: run.sh profile  -- none / the head alone / + prefer, 2 prompts per category
if [ "$1" = profile ]; then
  $PY -m benchmarks.step_profile --model $M --dtype float32 --method none \
    --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "fastmtp+prefer={\"speculative_config\": $FM, \"prompt_lookup\": \"prefer\"}}" \
    --k 3 --per-category 2 --max-new-tokens 128 --out-dir $OUT/profile
fi
# K with the lookup, on the dev prompts only: run.sh ksweep  -- the head alone and + prefer at K = 3, 4, 5
if [ "$1" = ksweep ]; then
  zcat data/smollm2/prompts/mixed.jsonl.gz | tail -n +12289 > runs/dev-undistilled.jsonl
  $PY -m benchmarks.run --model $M --dtype float32 --questions runs/dev-undistilled.jsonl --group-by category \
    --per-category 5 --max-new-tokens 128 --method none --method "fastmtp={\"speculative_config\": $FM}}" \
    --method "fastmtp+prefer={\"speculative_config\": $FM, \"prompt_lookup\": \"prefer\"}}" \
    --k 3 4 5 --headline-k 3 --rounds 1 --out-dir $OUT/dev_k --summary $OUT/dev_k/summary.json --overwrite
fi
