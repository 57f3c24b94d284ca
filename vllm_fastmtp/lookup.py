"""Prompt lookup beside the head (opt-in, `"prompt_lookup"` in the fastmtp config).

Where a request's own text already holds its last few tokens, what followed them there is often what comes next
(code copied from the prompt, a rewritten passage): vLLM's `ngram` method drafts only from that. This merges such a
match into the head's K drafts. Verification is unchanged, so outputs stay identical; only what is proposed moves.
vLLM-free: the integration layer finds the match (vLLM's own n-gram matcher) and calls `merge` per request.
"""

from __future__ import annotations

from typing import Sequence

# The n-gram lengths matched against the request's text: a longer suffix match wins (vLLM's ngram semantics).
MIN_NGRAM, MAX_NGRAM = 2, 3


def merge(head: list[int], found: Sequence[int], policy: str, k: int | None = None) -> list[int]:
    """The drafts to verify, from the head's (K of them, or fewer where draft-confidence stopping cut the row) and
    the up-to-K tokens that follow a prompt-lookup match; ``k``: K (default ``len(head)``).

    "agree": the head keeps position 1; when its token is also the match's first, positions 2.. come from the
    match (the head's later drafts are conditioned on its own guesses, the match on text that exists).
    "prefer": the match's tokens whenever there is one. Positions the match does not reach keep the head's.
    """
    found = list(found)[: len(head) if k is None else k]
    if not found:
        return head
    if policy == "agree":
        return head if not head or found[0] != head[0] else head[:1] + found[1:] + head[len(found):]
    if policy == "prefer":
        return found + head[len(found):]
    raise ValueError(f"unknown prompt_lookup policy {policy!r}")
