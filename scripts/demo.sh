#!/usr/bin/env bash
# From a fresh machine to a running fastmtp server: install, build a local MiMo-format model, serve it with
# method "fastmtp", send it a chat request and show the speculative-decoding counters.
# (The model is a tiny hand-set one that counts: its MTP head drafts correctly at every position, so the
# acceptance counters show what recursive drafting does. See docs/demo_model.md for the SmolLM2 demo model.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PORT="${PORT:-8011}"
MODEL=runs/demo-tiny-counting
mkdir -p runs
.venv/bin/python -m vllm_fastmtp.tiny_checkpoint "$MODEL" --init counting --head hidden \
  --vocab-size 384 --hidden-size 384 --num-attention-heads 6 --num-key-value-heads 2 >/dev/null
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
.venv/bin/vllm-fastmtp serve "$MODEL" --host 127.0.0.1 --port "$PORT" --dtype float32 --max-model-len 512 --enforce-eager \
  --served-model-name demo --speculative-config '{"method": "fastmtp", "num_speculative_tokens": 3}' \
  > runs/demo-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -40 runs/demo-server.log; exit 1; }
  sleep 1
done
echo "== server up on 127.0.0.1:$PORT (log: runs/demo-server.log)"
.venv/bin/python - "$PORT" <<'PY'
import sys, urllib.request
from openai import OpenAI
port = sys.argv[1]
client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "count!"}],
                                   max_tokens=32, temperature=0, extra_body={"ignore_eos": True})
print("== response text:", repr(r.choices[0].message.content))
metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
vals = {}
for line in metrics.splitlines():
    for name in ("num_drafts", "num_draft_tokens", "num_accepted_tokens"):
        if line.startswith(f"vllm:spec_decode_{name}_total{{"):
            vals[name] = float(line.rsplit(" ", 1)[1])
    if line.startswith("vllm:spec_decode_num_accepted_tokens_per_pos_total{"):
        pos = line.split('position="')[1].split('"')[0]
        vals[f"pos{pos}"] = float(line.rsplit(" ", 1)[1])
d = vals.get("num_drafts", 0) or 1
print(f"== fastmtp K=3: drafts={vals.get('num_drafts', 0):.0f} "
      f"acceptance length tau={1 + vals.get('num_accepted_tokens', 0) / d:.2f} "
      f"per-position acceptance={[round(vals.get(f'pos{i}', 0) / d, 2) for i in range(3)]}")
PY
