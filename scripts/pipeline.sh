#!/usr/bin/env bash
# The committed pipeline run (benchmarks/results/README.md), end to end on CPU:
#   demo model -> offline prompts -> self-distillation -> FastMTP head (K=3) and vanilla-style head (K=1)
#   -> SmolLM2 vocabulary maps -> side-by-side benchmark (Table 1 layout) -> benchmarks/results/summary.json
# About 2.5 hours on 2 CPU cores (distill 45 min, K=3 head 55 min, K=1 head 17 min, benchmark 25 min). Every step is deterministic for its seed (distill sampling included) up to
# floating-point scheduling differences. Usage: bash scripts/pipeline.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
R="${1:-runs/pipeline}"
PY=.venv/bin/python
mkdir -p "$R"
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-4}"

# 1. the demo model (SmolLM2-135M-Instruct -> MiMo format, head grafted from the last layer)
[[ -f "$R/smollm2-mimo/config.json" ]] || $PY -m benchmarks.demo_model "$R/smollm2-mimo" --dtype float32
# 2. offline prompts in the benchmark tasks' shapes (never their text; checked) and their own answers
$PY -m training.synth_prompts "$R/prompts" --general 1000 --math 350 --code 350 --chinese 400
$PY -m benchmarks.questions "$R"/prompts/{general,math,code,chinese}.jsonl
$PY -m training.distill --model "$R/smollm2-mimo" --prompts "$R/prompts/mixed.jsonl" --out "$R/distill.jsonl" \
  --limit 960 --max-tokens 256 --dtype float32 --enforce-eager --max-model-len 1024 --chunk-size 96
head -n 920 "$R/distill.jsonl" > "$R/train.jsonl"
tail -n 40 "$R/distill.jsonl" > "$R/eval.jsonl"
# 3. FastMTP head: K=3, beta=0.6, post-norm hidden state, self-distilled data
$PY -m training.finetune --model_path "$R/smollm2-mimo" --train_file "$R/train.jsonl" --eval_file "$R/eval.jsonl" \
  --max_eval_examples 40 --output_dir "$R/ft-k3" --num_steps 3 --num_train_epochs 1.6 --per_device_train_batch_size 8 \
  --train_sampling_strategy group_by_length --learning_rate 5e-4 --max_seq_len 512 --eval_strategy steps \
  --eval_steps 92 --save_steps 92 --logging_steps 8 --export both
# 4. vanilla-style head: K=1, pre-norm hidden state (what vLLM's `mtp` feeds), same data, reused K times at serving
$PY -m training.finetune --model_path "$R/smollm2-mimo" --train_file "$R/train.jsonl" --eval_file "$R/eval.jsonl" \
  --max_eval_examples 40 --output_dir "$R/ft-k1" --num_steps 1 --hidden_state pre_norm --num_train_epochs 0.5 \
  --per_device_train_batch_size 8 --train_sampling_strategy group_by_length --learning_rate 5e-4 --max_seq_len 512 \
  --eval_strategy steps --eval_steps 58 --save_steps 58 --logging_steps 8 --export full
# 5. draft maps from the training answers: English (general/math/code answers) and Chinese
$PY - "$R" <<'PYS'
import json, sys
r = sys.argv[1]
with open(f"{r}/train-en.jsonl", "w") as en, open(f"{r}/train-zh.jsonl", "w") as zh:
    for line in open(f"{r}/train.jsonl"):
        (zh if json.loads(line)["category"] == "chinese" else en).write(line)
PYS
NOTE="SmolLM2-135M-Instruct's own answers (training.distill, T=0.6) to the training split of training.synth_prompts prompts; benchmark prompts held out. See benchmarks/results/README.md"
$PY -m vocab_maps.build --tokenizer "$R/smollm2-mimo" --input "$R/train-en.jsonl" --roles assistant --language en \
  --size 2k,4k,8k --out "$R/maps/smollm2-en-{size}.pt" --note "$NOTE"
$PY -m vocab_maps.build --tokenizer "$R/smollm2-mimo" --input "$R/train-zh.jsonl" --roles assistant --language zh \
  --size 1k,8k --out "$R/maps/smollm2-zh-{size}.pt" --note "$NOTE"
# 6. benchmark: every method side by side in one run, lossless check, summary at K=3
M="$R/maps"
OUT="${OUT:-benchmarks/results/pipeline}"          # the committed run wrote here
SUMMARY="${SUMMARY:-benchmarks/results/summary.json}"
vocab() { printf '{"speculative_config": {"method": "fastmtp"%s, "draft_vocab": {"maps": {"en": "%s", "zh": "%s"}}}}' "$3" "$M/$1.pt" "$M/$2.pt"; }
$PY -m benchmarks.run --model "$R/ft-k3/final" --dtype float32 --group-by file --per-category 2 --max-new-tokens 128 \
  --method none \
  --method "mtp={\"model\": \"$R/ft-k1/final\", \"speculative_config\": {\"method\": \"mtp\", \"num_speculative_tokens\": 3}}" \
  --method 'fastmtp={"speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3}}' \
  --method "fastmtp-vocab2k=$(vocab smollm2-en-2k smollm2-zh-1k ', "num_speculative_tokens": 3')" \
  --method "fastmtp-vocab4k=$(vocab smollm2-en-4k smollm2-zh-8k ', "num_speculative_tokens": 3')" \
  --method "fastmtp-vocab8k=$(vocab smollm2-en-8k smollm2-zh-8k '')" \
  --k 1 2 3 --headline-k 3 --training-prompts "$R/prompts/mixed.jsonl" \
  --out-dir "$OUT" --summary "$SUMMARY" --overwrite
$PY -m benchmarks.step_costs "$OUT/results.json"
