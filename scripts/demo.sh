#!/usr/bin/env bash
# From a fresh machine to FastMTP on a real model, in minutes: install, build SmolLM2-135M-Instruct in MiMo format
# with the MTP head this project trained (shipped in benchmarks/demo_head/), serve it with method "fastmtp" and the
# per-language draft maps, send a chat request, then measure speedup and acceptance against no speculation
# side by side (a short run of benchmarks.run; the full, committed run is in benchmarks/results/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PORT="${PORT:-8011}"
MODEL=runs/demo-smollm2-fastmtp
SPEC='{"method": "fastmtp", "num_speculative_tokens": 3, "draft_vocab": {"maps": {"en": "smollm2-en-8k", "zh": "smollm2-zh-8k"}}}'
mkdir -p runs
.venv/bin/python -m benchmarks.demo_model "$MODEL" --head trained --dtype float32 --refresh  # rebuilt if the head changed
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
.venv/bin/vllm-fastmtp serve "$MODEL" --host 127.0.0.1 --port "$PORT" --dtype float32 --max-model-len 2048 --enforce-eager \
  --served-model-name demo --speculative-config "$SPEC" > runs/demo-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
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
r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Give me three tips for staying focused while studying."}],
                                   max_tokens=128, temperature=0)
print("== response:", r.choices[0].message.content)
vals = {}
for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines():
    for name in ("num_drafts", "num_accepted_tokens"):
        if line.startswith(f"vllm:spec_decode_{name}_total{{"):
            vals[name] = float(line.rsplit(" ", 1)[1])
    if line.startswith("vllm:spec_decode_num_accepted_tokens_per_pos_total{"):
        vals["pos" + line.split('position="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
d = vals.get("num_drafts", 0) or 1
print(f"== fastmtp K=3 on this request: acceptance length tau={1 + vals.get('num_accepted_tokens', 0) / d:.2f}, "
      f"per-position acceptance={[round(vals.get(f'pos{i}', 0) / d, 2) for i in range(3)]}")
PY
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT
echo "== short side-by-side benchmark: no speculation vs fastmtp (1 question per task, 128 new tokens)"
.venv/bin/python -m benchmarks.run --model "$MODEL" --dtype float32 --group-by file --per-category 1 --max-new-tokens 128 \
  --method none --method "fastmtp=$(printf '{"speculative_config": %s}' "$SPEC")" \
  --out-dir runs/demo-bench --overwrite
cat runs/demo-bench/table.md
