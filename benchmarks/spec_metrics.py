"""Speculative-decoding counters from vLLM's public metrics reader (``llm.get_metrics()``): a snapshot and the
delta between two, the one definition the benchmarks and the test engine job share.

A counter may come as several label sets (one per engine); they are summed, and the per-position acceptance
vector element-wise.
"""

from __future__ import annotations

DRAFTS = "vllm:spec_decode_num_drafts"
DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
ACCEPTED = "vllm:spec_decode_num_accepted_tokens"
ACCEPTED_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos"


def snapshot(llm) -> dict:
    """Counters summed over label sets; the per-position vector summed element-wise."""
    from vllm.v1.metrics.reader import Counter, Vector

    snap: dict = {DRAFTS: 0, DRAFT_TOKENS: 0, ACCEPTED: 0, ACCEPTED_PER_POS: []}
    for m in llm.get_metrics():
        if isinstance(m, Counter) and m.name in (DRAFTS, DRAFT_TOKENS, ACCEPTED):
            snap[m.name] += m.value
        elif isinstance(m, Vector) and m.name == ACCEPTED_PER_POS:
            snap[ACCEPTED_PER_POS] = add_vectors(snap[ACCEPTED_PER_POS], m.values)
    return snap


def add_vectors(a: list, b: list) -> list:
    """Element-wise sum, the shorter vector padded with zeros."""
    return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(max(len(a), len(b)))]


def add_counts(total: dict, part: dict) -> dict:
    """``total`` += ``part`` for every number in ``part`` and the per-position vector element-wise (in place)."""
    for k, v in part.items():
        total[k] = add_vectors(total.get(k, []), v) if k == "accepted_per_pos" else total.get(k, 0) + v
    return total


def delta(after: dict, before: dict) -> dict:
    """What happened between two snapshots: {"drafts", "draft_tokens", "accepted", "accepted_per_pos"}."""
    pos_a, pos_b = after[ACCEPTED_PER_POS], before[ACCEPTED_PER_POS]
    pos_b = pos_b + [0] * (len(pos_a) - len(pos_b))
    return {
        "drafts": after[DRAFTS] - before[DRAFTS],
        "draft_tokens": after[DRAFT_TOKENS] - before[DRAFT_TOKENS],
        "accepted": after[ACCEPTED] - before[ACCEPTED],
        "accepted_per_pos": [a - b for a, b in zip(pos_a, pos_b)],
    }
