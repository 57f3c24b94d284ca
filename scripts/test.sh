#!/usr/bin/env bash
# Install what the tests need, then run the whole suite against real vLLM (CPU). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
exec .venv/bin/python -m pytest -q "$@"
