"""`lookup.merge`: which of the head's drafts a prompt-lookup match replaces, per policy."""

import pytest

from vllm_fastmtp.lookup import merge

HEAD = [5, 6, 7]


@pytest.mark.parametrize("policy", ["agree", "prefer"])
def test_no_match_keeps_the_head(policy):
    assert merge(HEAD, [], policy) == HEAD


def test_agree_replaces_later_positions_only_when_position_one_agrees():
    assert merge(HEAD, [5, 9, 9], "agree") == [5, 9, 9]
    assert merge(HEAD, [4, 9, 9], "agree") == HEAD
    assert merge(HEAD, [5, 9], "agree") == [5, 9, 7]  # a short match: the head keeps what it does not reach
    assert merge(HEAD, [5, 9, 9, 9, 9], "agree") == [5, 9, 9]  # never more than K


def test_prefer_replaces_whenever_there_is_a_match():
    assert merge(HEAD, [4, 9, 9], "prefer") == [4, 9, 9]
    assert merge(HEAD, [4], "prefer") == [4, 6, 7]


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown prompt_lookup policy 'always'"):
        merge(HEAD, [1], "always")


def test_async_scheduling_is_refused_with_the_reason():
    """Mock runner: async scheduling is GPU-only (the CPU build always schedules synchronously), so this path
    cannot run here; the refusal comes before anything of the runner is read."""
    from types import SimpleNamespace

    from vllm_fastmtp.integration.proposer import FastMTPProposer
    from vllm_fastmtp.options import FastMTPConfigError

    with pytest.raises(FastMTPConfigError, match="prompt_lookup needs synchronous scheduling.*--no-async-scheduling"):
        FastMTPProposer._load_prompt_lookup(object(), SimpleNamespace(use_async_scheduling=True))
    with pytest.raises(FastMTPConfigError, match="prompt_lookup needs vLLM's V1 model runner"):
        FastMTPProposer._load_prompt_lookup(object(), None)
