#!/bin/bash
# A fourth serving-form epoch from the shipped head: the fourteenth session's seven chunks (seen before, the same
# files: their data fingerprints match the shipped head's metadata) + the eighth set (code3: HumanEval-shaped
# completions from 49 more packages), new.
# usage: run.sh caches | train | offline NAME MODEL_DIR | served OUT NAME=MODEL_DIR...  (EVALS=... for fewer sets)
# caches: after `bash scripts/pipeline.sh curate` (and PROMPT_SET=code3 ... distill before it); the chunk files are
# the cache stage's chunker's, train-chunk2-zhmath = every Chinese and the first 300 math records of train-chunk2
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root; everything it writes goes under runs/
PY=.venv/bin/python
R=runs/pipeline
C=$R/cache
M=$R/smollm2-mimo  # benchmarks.demo_model --head trained: the shipped head. This run started from the fourteenth
# session's (`git show 19865db:benchmarks/demo_head/smollm2-135m-fastmtp-k3.safetensors`, demo_model --head FILE);
# from the head shipped now, `train` is a sixth epoch
MAPS=vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt
CHUNKS="${CHUNKS:-public-chunk0 public2-chunk0 public2-chunk1 chunk2-zhmath broad2-chunk0 public3-chunk0 public3-chunk1 code3-chunk0}"
EVALS="${EVALS:-first105 public public2 public3 broad2 code3}"
case $1 in
caches)
  $PY - <<'PYS'
import json
rows = [l for l in open("runs/pipeline/train-chunk2.jsonl", encoding="utf-8")]
math = [l for l in rows if json.loads(l)["category"] == "math"][:300]
keep = [l for l in rows if json.loads(l)["category"] == "chinese" or l in math]
open("runs/pipeline/train-chunk2-zhmath.jsonl", "w", encoding="utf-8").write("".join(keep))
ev = [l for l in open("runs/pipeline/eval.jsonl", encoding="utf-8")]
open("runs/pipeline/eval-first105.jsonl", "w", encoding="utf-8").write("".join(ev[:105]))
for s in ("public", "public2", "public3", "broad2", "code3"):
    open(f"runs/pipeline/eval-{s}.jsonl", "w", encoding="utf-8").write(
        "".join(l for l in ev if json.loads(l)["id"].startswith(f"{s}.jsonl:")))
PYS
  for c in $CHUNKS; do $PY -m training.cache_states --model_path $M --data $R/train-$c.jsonl --out $C/train-$c --max_seq_len 1024 --no_progress; done
  for s in $EVALS; do $PY -m training.cache_states --model_path $M --data $R/eval-$s.jsonl --out $C/eval-$s --max_seq_len 1024 --no_progress; done ;;
train)
  # START=DIR SEED=N OUT=DIR (LR=peak lr, EXTRA=more finetune flags): a further epoch from this one's head (the fifth: START=runs/ft19/final SEED=20 OUT=runs/ft20)
  $PY -m training.finetune --model_path ${START:-$M} --cache_dir $(for c in $CHUNKS; do printf "$C/train-$c,"; done | sed 's/,$//') \
    --eval_file $R/eval-public.jsonl --eval_cache_dir $C/eval-public --max_eval_examples 82 --max_seq_len 1024 \
    --label_source greedy --draft_vocab $MAPS --num_steps 3 \
    --learning_rate ${LR:-4e-4} --warmup_steps 0.03 --train_form serving --num_train_epochs 1 --per_device_train_batch_size 8 \
    --train_sampling_strategy group_by_length --seed ${SEED:-19} \
    --eval_strategy steps --eval_steps 400 --save_steps 200 --logging_steps 40 --eval_on_start true --output_dir ${OUT:-runs/ft19} \
    --export both --export_dtype bfloat16 --resume_from_checkpoint last ${EXTRA:-} ;;
offline)  # ../offline_heads.sh
  bash benchmarks/results/offline_heads.sh runs/off19 "$2" "$3" $EVALS ;;
served)  # none + each head, one round: ../serve_heads.sh
  shift; bash benchmarks/results/serve_heads.sh "$@" ;;
esac
