"""The recursion really runs: hand-set heads that are right at draft step k only if step k is fed correctly.

The main model counts up (t -> t+1). The "token" head drafts input_token + 1: right at steps 2 and 3 only when
each step is fed the token drafted by the previous step. The "hidden" head drafts from the hidden state alone
(one token further than the state it is given): right at steps 2 and 3 only when each step is fed the head's own
output hidden state. Random prompts, so a broken recursion shows up as near-zero acceptance at positions 2-3.
Vanilla `mtp` runs the same head for comparison (vLLM 0.32's MTP loop also recurses on its own output).
"""

import pytest

from tests.fixtures.engine_job import run_job
from tests.fixtures.tiny_checkpoint import build_tiny_mimo

PROMPTS = [f"prompt {i}: " + "abcdefghij"[i % 10] * (i % 7 + 1) for i in range(12)]


def _acceptance(result):
    m = result["metrics"]["4"]
    return [a / m["drafts"] for a in m["accepted_per_pos"]]


@pytest.fixture(scope="module", params=["token", "hidden"])
def counting_model(request, tmp_path_factory):
    head = request.param
    path = build_tiny_mimo(
        tmp_path_factory.mktemp(f"counting_{head}"), init="counting", head=head,
        vocab_size=384, hidden_size=384, num_attention_heads=6, num_key_value_heads=2,
    )
    return head, path


@pytest.mark.slow
def test_per_position_acceptance_of_deterministic_heads(counting_model, tmp_path):
    head, path = counting_model
    results = {}
    for method in ("fastmtp", "mtp"):
        job = {"model": str(path), "prompts": PROMPTS, "max_tokens": 40, "batch_sizes": [4],
               "speculative_config": {"method": method, "num_speculative_tokens": 3}}
        results[method] = run_job(job, tmp_path, f"{head}_{method}")
        # Lossless: the main model alone continues each prompt's last byte by +1, +2, ...
        for prompt, out in zip(PROMPTS, results[method]["outputs"]["4"]):
            last = prompt.encode()[-1]
            assert out == list(range(last + 1, last + 1 + len(out))), (method, prompt, out)
    fast = _acceptance(results["fastmtp"])
    vanilla = _acceptance(results["mtp"])
    print(f"\nhead={head}: per-position acceptance fastmtp={fast} mtp={vanilla}")
    assert len(fast) == 3
    assert all(a >= 0.75 for a in fast), f"head={head}: fastmtp per-position acceptance {fast} < 75%"
