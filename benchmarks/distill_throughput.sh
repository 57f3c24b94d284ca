#!/usr/bin/env bash
# Distill throughput on this machine: the committed pipeline's settings vs the current defaults, same 128 prompts,
# one after the other on a quiet machine (run nothing beside it). Prints and writes generated tok/s per config.
#   bash benchmarks/distill_throughput.sh MODEL_DIR [OUT_DIR]      (CONFIGS="old bf16-fast" runs only those)
# Configs: old = fp32, chunk 96, one core reserved for vLLM's front-end (vLLM's CPU default, what the committed
# run used); then bf16 / fp32, chunk 512, with and without the reserved core, multi-process and in-process engine,
# top-k/top-p by vLLM's sampler (sorts the vocabulary) or by distill's sort-free logits processor (*-fast).
set -euo pipefail
cd "$(dirname "$0")/.."
M="$1"; OUT="${2:-runs/distill_throughput}"
PROMPTS=benchmarks/results/distill_throughput/prompts.jsonl
PY=.venv/bin/python
mkdir -p "$OUT"
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-4}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run() {  # NAME DTYPE CHUNK TOPK_TOPP ENV...
  local name=$1 dt=$2 chunk=$3 tktp=$4; shift 4
  [[ -z "${CONFIGS:-}" || " $CONFIGS " == *" $name "* ]] || return 0
  rm -f "$OUT/$name".jsonl*
  env "$@" $PY -m training.distill --model "$M" --prompts "$PROMPTS" --out "$OUT/$name.jsonl" --max-tokens 256 \
    --enforce-eager --max-model-len 1024 --no-progress --dtype "$dt" --chunk-size "$chunk" --top-k-top-p "$tktp" > "$OUT/$name.log" 2>&1
  $PY -c "import json,sys; r=json.load(open(sys.argv[1]))['run']; print(sys.argv[2], r['completion_tokens'], 'tokens', r['generation_s'], 's', r['completion_tokens_per_s'], 'tok/s')" "$OUT/$name.jsonl.stats.json" "$name"
}
run old float32 96 vllm VLLM_CPU_NUM_OF_RESERVED_CPU=1
run fp32-c512-reserved1 float32 512 vllm VLLM_CPU_NUM_OF_RESERVED_CPU=1
run bf16-c512-reserved1 bfloat16 512 vllm VLLM_CPU_NUM_OF_RESERVED_CPU=1
run bf16-c512-reserved0 bfloat16 512 vllm VLLM_CPU_NUM_OF_RESERVED_CPU=0
run bf16-c512-inprocess bfloat16 512 vllm VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_ENABLE_V1_MULTIPROCESSING=0
run fp32-c512-inprocess float32 512 vllm VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_ENABLE_V1_MULTIPROCESSING=0
run bf16-fast bfloat16 512 fast VLLM_CPU_NUM_OF_RESERVED_CPU=0
run fp32-fast float32 512 fast VLLM_CPU_NUM_OF_RESERVED_CPU=0
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
