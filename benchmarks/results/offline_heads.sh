#!/bin/bash
# Offline acceptance of a head on held-out sets: training.finetune with lr 0 and one step evaluates it exactly as
# the training path does (fp32, serving form, each conversation over its own en/zh 8k map) and prints position
# 1/2/3 acceptance (%) per set. The eval files are runs/pipeline/eval-SET.jsonl, their caches
# runs/pipeline/cache/eval-SET (training.cache_states).
# usage: offline_heads.sh OUT_ROOT NAME MODEL_DIR SET...  (the results scripts of relabelled_sharegpt/,
#        head_average/ and fourth_epoch/, scripts/device.sh); writes OUT_ROOT/NAME/SET/ and OUT_ROOT/NAME-SET.log
#        (PY, R, MAPS: the python, the run directory and the maps, default .venv/bin/python, runs/pipeline and the
#        en/zh 8k maps; MAPS= (empty) for the full vocabulary)
set -euo pipefail
cd "$(dirname "$0")/../.."  # the checkout root
PY="${PY:-.venv/bin/python}"
R="${R:-runs/pipeline}"
C=$R/cache
MAPS=${MAPS-vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt}
root=$1 name=$2 model=$3; shift 3
mkdir -p "$root"
for s in "$@"; do  # (the training cache is a placeholder: lr 0, the head is evaluated unchanged)
  $PY -m training.finetune --model_path "$model" --max_seq_len 1024 --label_source greedy \
    ${MAPS:+--draft_vocab "$MAPS"} --num_steps 3 --train_form serving \
    --per_device_train_batch_size 8 --cache_dir $C/eval-$s --eval_file $R/eval-$s.jsonl \
    --eval_cache_dir $C/eval-$s --learning_rate 0 --max_steps 1 --bf16 false --eval_strategy steps --eval_steps 1 \
    --save_strategy no --output_dir "$root/$name/$s" --export head > "$root/$name-$s.log" 2>&1
  $PY -c "import json, sys; m = json.load(open(sys.argv[1]))['metrics']; print(sys.argv[2], sys.argv[3], *[round(100 * m[f'eval_accept_pos{k}'], 2) for k in (1, 2, 3)])" \
    "$root/$name/$s/finetune_result.json" "$name" "$s"
done
