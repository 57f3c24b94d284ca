"""Lossless contract: fastmtp's greedy output equals decoding without speculation, token for token.

Real vLLM (CPU build) on float32 tiny MiMo checkpoints, so numerical batch variance cannot hide or fake a
mismatch. 60 varied prompts, submitted in batches of 1, 4 and 16, for K = 1, 3 and 5.
"""

import pytest

from tests.fixtures.engine_job import run_job

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "请用一句话介绍北京。",
    "1, 2, 3, 4, 5,",
    "Once upon a time",
    "SELECT name FROM users WHERE",
    "Translate to French: good morning",
    "机器学习是",
    "<html><body>",
    "import numpy as np\n",
    "Q: What is 12 * 12?\nA:",
    "The capital of France is",
    "Hello! How are you today?",
    "日本語のテキスト",
    "for (int i = 0; i < n; i++) {",
    "Roses are red, violets are blue,",
    "{\"key\": [1, 2, {\"nested\": true}]}",
    "a",
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    "The mitochondria is the powerhouse of the",
    "Mixed 中英文 text with numbers 42.",
    "\n\n\n",
    "Dear Sir or Madam,",
    "#include <stdio.h>\nint main() {",
    "E = mc^2 means",
    "List three colors:",
    "今天天气很好，我们去",
    "The year 1969 was notable because",
    "printf(\"%d\\n\", x);",
    "Summarize: The meeting was postponed due to rain.",
]
PROMPTS += [f"Item {i}: {p[: 10 + i]}" for i, p in enumerate(PROMPTS[:20])]  # 50 in all, varied lengths
BATCH_SIZES = [1, 4, 16]
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def reference(tiny_random_mimo, tmp_path_factory):
    job = {"model": str(tiny_random_mimo), "speculative_config": None, "prompts": PROMPTS,
           "max_tokens": MAX_TOKENS, "batch_sizes": BATCH_SIZES}
    return run_job(job, tmp_path_factory.mktemp("ref"), "none")


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 3, 5])
def test_fastmtp_greedy_equals_no_speculation(tiny_random_mimo, reference, tmp_path, k):
    assert len(PROMPTS) >= 50
    job = {"model": str(tiny_random_mimo), "prompts": PROMPTS, "max_tokens": MAX_TOKENS,
           "batch_sizes": BATCH_SIZES,
           "speculative_config": {"method": "fastmtp", "num_speculative_tokens": k}}
    got = run_job(job, tmp_path, f"fastmtp_k{k}")
    for bs in map(str, BATCH_SIZES):
        ref, out = reference["outputs"][bs], got["outputs"][bs]
        assert len(out) == len(PROMPTS)
        mismatches = [i for i, (a, b) in enumerate(zip(ref, out)) if a != b]
        assert not mismatches, f"K={k} batch={bs}: prompts {mismatches} differ from no speculation"
        m = got["metrics"][bs]
        # Speculation really ran: K drafts per verify step, per-position counters for every position.
        assert m["drafts"] > 0 and m["draft_tokens"] == k * m["drafts"]
        assert len(m["accepted_per_pos"]) == k
    # The reference outputs themselves must be reproducible across batch sizes (float32): otherwise the
    # comparison above would be comparing noise.
    assert reference["outputs"]["1"] == reference["outputs"]["16"]


@pytest.mark.slow
def test_draft_confidence_keeps_greedy_output(tiny_random_mimo, reference, tmp_path):
    """Draft-confidence stopping hands the scheduler drafts of every length 0..K (checked: the threshold is one at
    which the random head's running products cross it at every step) and the output stays no speculation's."""
    job = {"model": str(tiny_random_mimo), "prompts": PROMPTS, "max_tokens": MAX_TOKENS, "batch_sizes": BATCH_SIZES,
           "speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3, "draft_confidence": 0.08}}
    got = run_job(job, tmp_path, "confidence")
    for bs in map(str, BATCH_SIZES):
        mismatches = [i for i, (a, b) in enumerate(zip(reference["outputs"][bs], got["outputs"][bs])) if a != b]
        assert not mismatches, f"draft_confidence batch={bs}: prompts {mismatches} differ from no speculation"
        m = got["metrics"][bs]
        assert 0 < m["drafts"] < m["draft_tokens"] < 3 * m["drafts"]  # cut rows reached the scheduler
    assert {"0", "1", "2", "3"} <= set(got["draft_lengths"])
    assert got["confidence"]["skipped_steps"] > 0  # and the head skipped steps once every row had ended
    assert got["drafter"]["draft_confidence"] == "0.08"


# A counting model continues "...abc" with "defg...", and its head drafts the same. Each prompt also holds that
# run earlier followed by other text, so a prompt-lookup match proposes the earlier text: with "agree" at
# positions 2-3 (the head's position 1 agrees), with "prefer" at all three.
LOOKUP_PROMPTS = ["abcdeXYZ then abc", "mnopq!!! mno", "0123456789 then 012", "rstuv rs"]


LOOKUP_SPEC = {"method": "fastmtp", "num_speculative_tokens": 3}


def _lookup_job(model) -> dict:
    return {"model": str(model), "prompts": LOOKUP_PROMPTS, "max_tokens": MAX_TOKENS, "batch_sizes": [1, 4]}


@pytest.fixture(scope="module")
def counting_baselines(tiny_counting_mimo, tmp_path_factory):
    """No speculation and the head alone on LOOKUP_PROMPTS, run once for both policies."""
    tmp = tmp_path_factory.mktemp("lookup_baselines")
    job = _lookup_job(tiny_counting_mimo)
    return (run_job({**job, "speculative_config": None}, tmp, "none"),
            run_job({**job, "speculative_config": LOOKUP_SPEC}, tmp, "head_alone"))


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["agree", "prefer"])
def test_prompt_lookup_keeps_greedy_output(tiny_counting_mimo, counting_baselines, tmp_path, policy):
    """Prompt lookup only changes what is proposed: the output stays no speculation's, and the lookup really ran
    (rows changed, and the merged drafts are accepted less than the counting head's own, which are all right)."""
    ref, head = counting_baselines
    got = run_job({**_lookup_job(tiny_counting_mimo), "speculative_config": {**LOOKUP_SPEC, "prompt_lookup": policy}},
                  tmp_path, f"lookup_{policy}")
    for bs in ("1", "4"):
        mismatches = [i for i, (a, b) in enumerate(zip(ref["outputs"][bs], got["outputs"][bs])) if a != b]
        assert not mismatches, f"prompt_lookup={policy} batch={bs}: prompts {mismatches} differ from no speculation"
        m, h = got["metrics"][bs], head["metrics"][bs]
        # the head alone: every draft right; merged, some position-2 drafts are the earlier text's, and wrong
        assert h["accepted_per_pos"][1] == h["accepted_per_pos"][0] > 0
        assert m["accepted_per_pos"][1] / m["drafts"] < h["accepted_per_pos"][1] / h["drafts"]
    assert got["drafter"]["prompt_lookup"] == policy
    assert 0 < got["lookup_rows"]["changed"] < got["lookup_rows"]["rows"]
    assert head["lookup_rows"] == {}


@pytest.mark.slow
def test_prompt_lookup_merges_into_confidence_cut_rows(tiny_counting_mimo, counting_baselines, tmp_path):
    """Both opt-ins at once: the lookup merges into the per-request lists draft_confidence hands back, and the
    output stays no speculation's."""
    ref, _ = counting_baselines
    spec = {**LOOKUP_SPEC, "prompt_lookup": "prefer", "draft_confidence": 0.5}
    got = run_job({**_lookup_job(tiny_counting_mimo), "speculative_config": spec}, tmp_path, "lookup_confidence")
    for bs in ("1", "4"):
        mismatches = [i for i, (a, b) in enumerate(zip(ref["outputs"][bs], got["outputs"][bs])) if a != b]
        assert not mismatches, f"prefer + draft_confidence batch={bs}: prompts {mismatches} differ"
        assert got["metrics"][bs]["drafts"] > 0
    assert 0 < got["lookup_rows"]["changed"] < got["lookup_rows"]["rows"]
    assert sum(got["draft_lengths"].values()) > 0 and got["drafter"]["draft_confidence"] == "0.5"
