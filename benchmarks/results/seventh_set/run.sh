#!/bin/bash
# The seventh set's epoch (caches: scripts/pipeline.sh curate, the cache stage's chunker, training.cache_states per
# chunk and for eval-public4 = the held-out records whose id starts with public4.jsonl:)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root
C=runs/pipeline/cache
.venv/bin/python -m training.finetune --model_path runs/pipeline/smollm2-mimo \
  --cache_dir $C/train-public4-chunk0,$C/train-public4-chunk1,$C/train-public3-chunk0,$C/train-public3-chunk1,$C/train-chunk2-zhmath,$C/train-broad2-chunk0 \
  --eval_file runs/pipeline/eval-public4.jsonl --eval_cache_dir $C/eval-public4 --max_seq_len 1024 \
  --label_source greedy --draft_vocab vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt --num_steps 3 \
  --learning_rate 4e-4 --warmup_steps 0.03 --train_form serving --num_train_epochs 1 --per_device_train_batch_size 8 \
  --train_sampling_strategy group_by_length --seed 16 \
  --eval_strategy steps --eval_steps 300 --save_steps 100 --logging_steps 40 --eval_on_start true --output_dir runs/ft16 \
  --export both --export_dtype bfloat16 --resume_from_checkpoint last
