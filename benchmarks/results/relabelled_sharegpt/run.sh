#!/bin/bash
# Relabelled ShareGPT text vs another pass over self-distilled answers, each from the shipped head.
# usage: run.sh train R|S [max_steps]   |   run.sh offline NAME MODEL_DIR   |   run.sh served OUT NAME=MODEL_DIR ...
# R = the relabelled arm (cache: training.cache_states over training.public_chats' 1,500 conversations), S = the
# same number of trained targets over the model's own answers (S ran with max_steps 520)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root; everything it writes goes under runs/relab
PY=.venv/bin/python
C=runs/pipeline/cache
MAPS=vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt
COMMON=(--model_path runs/pipeline/smollm2-mimo --max_seq_len 1024 --label_source greedy --draft_vocab $MAPS
  --num_steps 3 --train_form serving --per_device_train_batch_size 8 --train_sampling_strategy group_by_length)
case $1 in
train)
  arm=$2
  if [ "$arm" = R ]; then data=(--cache_dir $C/sharegpt-chats --num_train_epochs 1)
  else data=(--cache_dir $C/train-public-chunk0,$C/train-public2-chunk0,$C/train-public3-chunk0 --max_steps $3); fi
  $PY -m training.finetune "${COMMON[@]}" "${data[@]}" \
    --eval_file runs/pipeline/eval-public.jsonl --eval_cache_dir $C/eval-public --max_eval_examples 82 \
    --learning_rate 4e-4 --warmup_steps 0.03 --seed 15 --eval_strategy no --save_steps 100 --logging_steps 20 \
    --output_dir runs/relab/$arm --export both --export_dtype bfloat16 --resume_from_checkpoint last ;;
offline)  # ../offline_heads.sh
  bash benchmarks/results/offline_heads.sh runs/relab/off "$2" "$3" first105 public public2 public3 ;;
esac
# served acceptance (greedy: deterministic per head, one round), beside no speculation for the lossless check
# usage: run.sh served OUT NAME=MODEL_DIR ...  (../serve_heads.sh)
if [ "$1" = served ]; then
  shift; bash benchmarks/results/serve_heads.sh "$@"
fi
