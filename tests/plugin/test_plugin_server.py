"""The README's serve command end to end on 127.0.0.1: completions, streamed chat, metrics, and 64 concurrent
clients whose answers must equal decoding without speculation.

The server is `vllm-fastmtp serve` (vLLM's own CLI and OpenAI server, multiprocess engine, plugin loaded through
its entry point in every process). Every request here is bounded in count and time; the server is stopped at the end.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.engine_job import run_job

N_CLIENTS = 64
MAX_TOKENS = 12
LOAD_PROMPTS = [f"Request {i}: tell me about topic {i * 7 % 13} " + "xyz"[i % 3] * (i % 5) for i in range(N_CLIENTS)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_random_mimo, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    spec = json.dumps({"method": "fastmtp", "num_speculative_tokens": 3})
    cmd = [
        str(Path(sys.executable).parent / "vllm-fastmtp"), "serve", str(tiny_random_mimo),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
        "--max-model-len", "512", "--speculative-config", spec, "--served-model-name", "tiny",
    ]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited rc={proc.returncode}:\n{log.read_text()[-5000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"server not healthy after 240 s:\n{log.read_text()[-5000:]}")
            time.sleep(1)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _client(base):
    from openai import OpenAI

    return OpenAI(base_url=base + "/v1", api_key="unused", timeout=120, max_retries=0)


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_completions_chat_stream_and_metrics(server):
    base, log = server
    client = _client(base)
    done = client.completions.create(model="tiny", prompt="Hello there", max_tokens=MAX_TOKENS, temperature=0)
    assert done.usage.completion_tokens == MAX_TOKENS or done.choices[0].finish_reason == "stop"
    assert isinstance(done.choices[0].text, str)

    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Say something"}], max_tokens=MAX_TOKENS,
        temperature=0, stream=True,
    )
    chunks = [c for c in stream]
    assert len(chunks) >= 2
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason in ("length", "stop")

    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    drafts = _metric(text, "vllm:spec_decode_num_drafts_total")
    draft_tokens = _metric(text, "vllm:spec_decode_num_draft_tokens_total")
    assert drafts > 0, "no spec-decode drafts counted"
    assert draft_tokens == 3 * drafts
    assert re.search(r"^vllm:spec_decode_num_accepted_tokens_total\{", text, re.M)
    assert re.search(r'^vllm:spec_decode_num_accepted_tokens_per_pos_total\{.*position="2"', text, re.M)
    assert "fastmtp" in log.read_text()  # the plugin's start-up line: the drafter that ran is fastmtp's


@pytest.mark.slow
def test_64_concurrent_clients_equal_no_speculation(server, tiny_random_mimo, tmp_path):
    base, _ = server
    client = _client(base)

    def ask(prompt):
        r = client.completions.create(model="tiny", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0,
                                      extra_body={"return_token_ids": True, "ignore_eos": True})
        return r.choices[0]

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=N_CLIENTS) as pool:
        answers = list(pool.map(ask, LOAD_PROMPTS, timeout=300))
    elapsed = time.time() - t0
    assert len(answers) == N_CLIENTS
    reference = run_job({"model": str(tiny_random_mimo), "speculative_config": None, "prompts": LOAD_PROMPTS,
                         "max_tokens": MAX_TOKENS, "batch_sizes": [N_CLIENTS]}, tmp_path, "ref")["outputs"]
    ref = reference[str(N_CLIENTS)]
    got = [list(a.token_ids) for a in answers]
    bad = [i for i in range(N_CLIENTS) if got[i] != ref[i]]
    print(f"\n{N_CLIENTS} concurrent requests answered in {elapsed:.1f} s")
    assert not bad, f"requests {bad} differ from decoding without speculation"
