"""Draft-confidence stopping: where each request's drafts end, the probabilities it weighs, and its config."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vllm_fastmtp.confidence import ConfidenceStop, check_threshold, top_token
from vllm_fastmtp.draft_vocab import PrunedDraftHead
from vllm_fastmtp.lookup import merge
from vllm_fastmtp.options import FastMTPConfigError, split_speculative_config

VLLM_KEYS = {"method", "num_speculative_tokens", "model", "draft_sample_method"}


def test_rows_end_where_the_running_product_falls_below_the_threshold():
    stop = ConfidenceStop(0.4)
    stop.start(4)
    ids = [torch.tensor([10, 20, 30, 40]), torch.tensor([11, 21, 31, 41]), torch.tensor([12, 22, 32, 42])]
    probs = [torch.tensor([0.9, 0.3, 0.95, 0.9]), torch.tensor([0.5, 1.0, 0.95, 0.4]),
             torch.tensor([0.9, 1.0, 0.95, 1.0])]
    assert stop.add(ids[0], probs[0]) is False
    assert stop.add(ids[1], probs[1]) is False
    assert stop.add(ids[2], probs[2]) is False
    # row 0: 0.9, 0.45, 0.405; row 1 ends at once and a later 1.0 does not revive it; row 3: 0.9 then 0.36
    assert stop.rows() == [[10, 11, 12], [], [30, 31, 32], [40]]
    assert stop.num_steps == 3


def test_add_says_when_every_request_has_ended_and_padded_rows_do_not_count():
    stop = ConfidenceStop(0.5)
    stop.start(2)
    # a third, padded row is confident but is not a request
    assert stop.add(torch.tensor([1, 2, 3]), torch.tensor([0.9, 0.2, 0.99])) is False
    assert stop.add(torch.tensor([4, 5, 6]), torch.tensor([0.5, 0.9, 0.99])) is True  # 0.45 and an ended row
    assert stop.rows() == [[1], []]
    stop.start(1)  # a new call forgets the last one
    assert stop.rows() == [[]] and stop.num_steps == 0


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.5", None])
def test_threshold_must_be_a_number_strictly_between_0_and_1(bad):
    with pytest.raises(ValueError, match=r"expected a number in \(0, 1\)"):
        check_threshold(bad)


def test_top_token_is_the_softmax_maximum():
    logits = torch.randn(5, 50, dtype=torch.bfloat16)
    ids, probs = top_token(logits)
    ref = torch.softmax(logits.float(), dim=-1)
    assert torch.equal(ids, ref.argmax(dim=-1))
    assert torch.allclose(probs, ref.max(dim=-1).values, atol=1e-6)


def test_pruned_head_pick_scores_each_row_over_its_own_map():
    torch.manual_seed(0)
    weight = torch.randn(40, 8)
    maps = {"en": torch.tensor([3, 7, 11, 19, 23]), "zh": None}
    head = PrunedDraftHead(weight, maps)
    hidden = torch.randn(3, 8)
    langs = ["en", "zh", "en"]
    ids, probs = head.pick(hidden, langs)
    assert torch.equal(ids, head.argmax(hidden, langs))
    for row, lang in enumerate(langs):
        rows = weight if maps[lang] is None else weight[maps[lang]]
        p = torch.softmax(hidden[row] @ rows.T, dim=-1)
        assert probs[row] == pytest.approx(p.max().item(), abs=1e-6)
    one_ids, one_probs = head.pick(hidden[:1], ["en"])  # the one-language fast path agrees
    assert one_ids.item() == ids[0].item() and one_probs.item() == pytest.approx(probs[0].item())


def test_config_key_is_checked_before_anything_is_built():
    assert split_speculative_config({}, VLLM_KEYS)[1].draft_confidence is None
    assert split_speculative_config({"draft_confidence": 0.25}, VLLM_KEYS)[1].draft_confidence == 0.25
    with pytest.raises(FastMTPConfigError, match=r"draft_confidence: expected a number in \(0, 1\).*got 1"):
        split_speculative_config({"draft_confidence": 1}, VLLM_KEYS)
    with pytest.raises(FastMTPConfigError, match="draft_confidence needs draft_sample_method 'greedy'"):
        split_speculative_config({"draft_confidence": 0.2, "draft_sample_method": "probabilistic"}, VLLM_KEYS)


def test_async_scheduling_is_refused_with_the_reason():
    """Mock runner: async scheduling is GPU-only (the CPU build always schedules synchronously), so this path
    cannot run here."""
    from vllm_fastmtp.integration.proposer import _require_sync_scheduling

    with pytest.raises(FastMTPConfigError, match="draft_confidence needs synchronous scheduling.*--no-async"):
        _require_sync_scheduling(SimpleNamespace(use_async_scheduling=True), "draft_confidence", "lists")
    with pytest.raises(FastMTPConfigError, match="draft_confidence needs vLLM's V1 model runner"):
        _require_sync_scheduling(None, "draft_confidence", "lists")


def test_lookup_merges_into_a_row_confidence_cut():
    assert merge([5], [4, 9, 9], "prefer", k=3) == [4, 9, 9]  # looked-up tokens are kept past the cut
    assert merge([5], [5, 9, 9], "agree", k=3) == [5, 9, 9]
    assert merge([], [5, 9, 9], "agree", k=3) == []  # no position 1 to agree with
    assert merge([], [5, 9, 9, 8], "prefer", k=3) == [5, 9, 9]  # never more than K
