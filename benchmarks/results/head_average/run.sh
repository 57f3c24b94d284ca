# Weight averages (and extrapolations) of the shipped head's lineage: the heads shipped in the eleventh, thirteenth
# and fourteenth sessions (each continued the one before with one more cosine-decayed epoch), offline on five
# held-out sets.
# usage: run.sh heads            -> runs/swa/*.safetensors and a demo model per head (runs/swa/m-NAME)
#        run.sh offline NAME...  -> offline acceptance of each head on the held-out sets (eval caches: see README)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root; everything it writes goes under runs/swa
PY=.venv/bin/python
C=runs/pipeline/cache
MAPS=vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt
HEAD=benchmarks/demo_head/smollm2-135m-fastmtp-k3.safetensors
mkdir -p runs/swa
model() { [ "$1" = shipped ] && echo runs/pipeline/smollm2-mimo || echo runs/swa/m-$1; }
case $1 in
heads)
  for c in a1db3cd:h11 d431623:h13 19865db:h14; do git show ${c%%:*}:$HEAD > runs/swa/${c##*:}.safetensors; done
  # weighted sums of the three, in fp32, stored bf16 as shipped, the newest head's metadata kept
  $PY - <<'PYS'
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
meta = safe_open("runs/swa/h14.safetensors", "pt").metadata()
h = {n: load_file(f"runs/swa/{n}.safetensors") for n in ("h11", "h13", "h14")}
mixes = {"a1314": {"h13": 0.5, "h14": 0.5}, "a111314": {"h11": 1 / 3, "h13": 1 / 3, "h14": 1 / 3},
         "x5": {"h13": -0.5, "h14": 1.5}, "x10": {"h13": -1.0, "h14": 2.0}}  # x: past h14, away from h13
for name, w in mixes.items():
    sd = {k: sum(c * h[n][k].float() for n, c in w.items()).to(torch.bfloat16).contiguous() for k in h["h14"]}
    save_file(sd, f"runs/swa/{name}.safetensors", metadata=meta)
PYS
  for n in a1314 a111314 x5 x10; do $PY -m benchmarks.demo_model runs/swa/m-$n --dtype float32 --head runs/swa/$n.safetensors --refresh; done ;;
offline)
  shift
  for name in "$@"; do
    m=$(model $name)
    for s in eval-first105 eval-public eval-public2 eval-public3 eval-broad2; do
      $PY -m training.finetune --model_path $m --max_seq_len 1024 --label_source greedy --draft_vocab $MAPS \
        --num_steps 3 --train_form serving --per_device_train_batch_size 8 --cache_dir $C/eval-public \
        --eval_file runs/pipeline/$s.jsonl --eval_cache_dir $C/$s --learning_rate 0 --max_steps 1 --bf16 false \
        --eval_strategy steps --eval_steps 1 --save_strategy no --output_dir runs/swa/off/$name/$s --export head \
        > runs/swa/off-$name-$s.log 2>&1
      $PY -c "import json; m=json.load(open('runs/swa/off/$name/$s/finetune_result.json'))['metrics']; print('$name', '$s', *[round(100*m[f'eval_accept_pos{k}'],2) for k in (1,2,3)])"
    done
  done ;;
esac
