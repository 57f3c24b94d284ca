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
