#!/bin/bash
# greedy-context vs sampled-context ablation (seventh session): same prompts, same steps, from the shipped head
set -euo pipefail
cd /work/main
PY=.venv/bin/python; G=runs/greedy; M=runs/pipeline/smollm2-mimo
python3 - <<'PYEOF'
import json
G = "runs/greedy"
ev, tr = open(f"{G}/eval-greedy.jsonl", "w"), open(f"{G}/train-greedy-raw.jsonl", "w")
for ln in open(f"{G}/distill.jsonl"):
    (ev if json.loads(ln)["id"].startswith("prompts-eval105") else tr).write(ln)
PYEOF
$PY -m training.curate --in $G/train-greedy-raw.jsonl --out $G/train-greedy-cur.jsonl --keep-truncated --dedup-on conversation --overwrite
python3 - <<'PYEOF'
import json
G = "runs/greedy"
first = lambda r: r["messages"][0]["content"]
g = [json.loads(l) for l in open(f"{G}/train-greedy-cur.jsonl")]
s = [json.loads(l) for l in open(f"{G}/sampled-sub.jsonl")]
both = {first(r) for r in g} & {first(r) for r in s}
for name, rows in (("greedy", g), ("sampled", s)):
    kept = [r for r in rows if first(r) in both]
    with open(f"{G}/train-{name}.jsonl", "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    print(name, len(rows), "->", len(kept))
PYEOF
for n in eval-greedy train-greedy train-sampled; do
  [[ -f $G/cache/$n.done ]] || { $PY -m training.cache_states --model_path $M --data $G/$n.jsonl --out $G/cache/$n --max_seq_len 1024 && touch $G/cache/$n.done; }
done
for n in greedy sampled; do
  [[ -f $G/ft-$n/finetune_result.json ]] || $PY -m training.finetune --model_path runs/pipeline/shipped5 --cache_dir $G/cache/train-$n \
    --eval_file $G/eval-greedy.jsonl --eval_cache_dir $G/cache/eval-greedy --max_eval_examples 105 --max_seq_len 1024 \
    --label_source greedy --draft_vocab vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt --num_steps 3 \
    --learning_rate 7e-4 --warmup_steps 0.03 --train_form serving --num_train_epochs 1 --per_device_train_batch_size 8 \
    --train_sampling_strategy group_by_length --eval_strategy steps --eval_steps 1000 --save_strategy no --logging_steps 19 \
    --eval_on_start true --output_dir $G/ft-$n --export both --export_dtype bfloat16 --seed 0
done
EN=vocab_maps/smollm2-en-8k.pt; ZH=vocab_maps/smollm2-zh-8k.pt
FM="{\"method\": \"fastmtp\", \"num_speculative_tokens\": 3, \"draft_vocab\": {\"maps\": {\"en\": \"$EN\", \"zh\": \"$ZH\"}}}"
$PY -m benchmarks.run --model $G/ft-greedy/final --dtype float32 --group-by file --per-category 5 --max-new-tokens 128 \
  --method none --method "sampled-ctx={\"model\": \"$G/ft-sampled/final\", \"speculative_config\": $FM}" \
  --method "greedy-ctx={\"speculative_config\": $FM}" --k 3 --headline-k 3 \
  --training-prompts data/smollm2/prompts/{mixed,broad,broad2}.jsonl --out-dir $G/bench --overwrite
echo ALL DONE
