#!/bin/bash
# Weight averages (and extrapolations) of the shipped head's lineage: the heads shipped in the eleventh, thirteenth
# and fourteenth sessions (each continued the one before with one more cosine-decayed epoch), offline on five
# held-out sets.
# usage: run.sh heads            -> runs/swa/*.safetensors and a demo model per head (runs/swa/m-NAME)
#        run.sh offline NAME...  -> offline acceptance of each head (h14 = the head these were measured against)
#                                   on the held-out sets (eval caches: see README)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the checkout root; everything it writes goes under runs/swa
PY=.venv/bin/python
HEAD=benchmarks/demo_head/smollm2-135m-fastmtp-k3.safetensors
mkdir -p runs/swa
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
  for n in h14 a1314 a111314 x5 x10; do $PY -m benchmarks.demo_model runs/swa/m-$n --dtype float32 --head runs/swa/$n.safetensors --refresh; done ;;
offline)  # ../offline_heads.sh
  shift
  for name in "$@"; do
    bash benchmarks/results/offline_heads.sh runs/swa/off "$name" runs/swa/m-$name first105 public public2 public3 broad2
  done ;;
esac
