"""Language-switched pruned draft vocabularies inside real vLLM: lossless, per-request, and really applied.

Maps for the tiny byte-level tokenizer are written by the test in the FR-Spec format (torch-saved list of ids).
"""

import json
import re

import pytest
import torch

from tests.fixtures.engine_job import run_job

EN = ["The weather is nice today.", "def add(a, b): return a + b", "Once upon a time there was",
      "Numbers: 1 2 3 4", "Hello world, hello vLLM"]
ZH = ["今天天气很好。", "机器学习是人工智能的一个分支", "请介绍一下北京的历史", "我们一起去公园吧", "你好，世界"]
MIXED = [p for pair in zip(EN, ZH) for p in pair]  # alternating languages inside every batch
SPECIALS = [256, 257, 258]


def _write_map(path, ids):
    torch.save([int(i) for i in ids], path)
    return str(path)


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    d = tmp_path_factory.mktemp("maps")
    en = _write_map(d / "en.pt", list(range(0, 128)) + SPECIALS)  # ASCII bytes only
    zh = _write_map(d / "zh.pt", list(range(0xE0, 0xF0)) + list(range(0x80, 0xC0)) + list(range(32, 127)) + SPECIALS)
    return {"en": en, "zh": zh}


@pytest.mark.slow
def test_mixed_language_batches_are_lossless_and_use_the_right_map(tiny_random_mimo, maps, tmp_path):
    base = {"model": str(tiny_random_mimo), "prompts": MIXED, "max_tokens": 16, "batch_sizes": [1, 10]}
    ref = run_job({**base, "speculative_config": None}, tmp_path, "none")
    spec = {"method": "fastmtp", "num_speculative_tokens": 3,
            "draft_vocab": {"maps": maps, "default": "en", "zh_threshold": 0.3}}
    got = run_job({**base, "speculative_config": spec}, tmp_path, "fastmtp_maps")
    for bs in ("1", "10"):
        assert got["outputs"][bs] == ref["outputs"][bs], f"batch {bs}: pruned drafting changed the output"
    # Every request was assigned its prompt's language (internal ids extend the user-facing ones).
    langs = got["request_language"]
    for bs in ("1", "10"):
        for prompt, rid in zip(MIXED, got["request_ids"][bs]):
            matches = [lang for internal, lang in langs.items() if internal == rid or internal.startswith(rid + "-")]
            assert matches == ["zh" if prompt in ZH else "en"], (prompt, rid, matches)
    assert got["map_rows"]["en"] > 0 and got["map_rows"]["zh"] > 0


@pytest.mark.slow
def test_pruned_map_really_restricts_drafts(tmp_path):
    """Counting model: drafts are right at every position with the full vocabulary; a map without the ids the
    count reaches makes those drafts impossible, yet the output stays identical (verification is full-vocab)."""
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    model = build_tiny_mimo(tmp_path / "count", init="counting", head="token", vocab_size=384, hidden_size=384,
                            num_attention_heads=6, num_key_value_heads=2)
    prompts = ["abcdefgh", "xyz", "0123", "QRS"]  # counting from these crosses byte 127 within 40 tokens
    narrow = _write_map(tmp_path / "ascii.pt", list(range(0, 128)) + SPECIALS)
    base = {"model": str(model), "prompts": prompts, "max_tokens": 40, "batch_sizes": [4],
            "env": {"VLLM_FASTMTP_RECORD_DRAFTS": "1"}}
    full = run_job({**base, "speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3}}, tmp_path, "full")
    pruned = run_job({**base, "speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3,
                                                     "draft_vocab": {"maps": {"en": narrow}}}}, tmp_path, "pruned")
    for prompt, out in zip(prompts, pruned["outputs"]["4"]):
        last = prompt.encode()[-1]
        assert out == list(range(last + 1, last + 41))
    assert pruned["outputs"] == full["outputs"]
    # an fp32 model's map rows are scored in bf16 where this CPU computes it natively ("pick_dtype": "auto")
    from vllm_fastmtp.precision import bf16_native

    assert pruned["drafter"]["pick_dtype"] == ("bfloat16" if bf16_native("cpu") else "float32")
    # bf16 rows take vLLM's kernel; fp32 rows whichever of the two measured faster on this CPU at load
    assert re.fullmatch(r"en:vllm" if bf16_native("cpu") else r"en:(torch|vllm)", pruned["drafter"]["pick_kernel"])
    # MiMo's MTP input_proj is a plain torch Linear: both engines draft through vLLM's prepared CPU GEMM instead
    for job in (full, pruned):
        assert re.fullmatch(r"model\.mtp_layers\.\d+\.input_proj", job["drafter"]["packed_linears"]), job["drafter"]
    # and, the engine being eager, its norms and activation through the CPU build's C kernels (integration.cpu_kernels)
    c_layers = {name.rsplit(".", 1)[-1] for name in pruned["drafter"]["c_kernels"].split(",")}
    assert c_layers == {"token_layernorm", "hidden_layernorm", "input_layernorm", "post_attention_layernorm",
                        "act_fn", "final_layernorm"}, pruned["drafter"]
    native = run_job({**base, "speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3,
                                                     "cpu_c_kernels": False}}, tmp_path, "full_native_norms")
    assert "c_kernels" not in native["drafter"] and native["outputs"] == full["outputs"]
    # the counting head drafts the same tokens through either path
    assert [d for _, d in native["drafts"]] == [d for _, d in full["drafts"]]
    assert all(d < 128 or d in SPECIALS for _, drafts in pruned["drafts"] for d in drafts)
    assert any(d >= 128 for _, drafts in full["drafts"] for d in drafts)
    acc = lambda r: r["metrics"]["4"]["accepted"] / r["metrics"]["4"]["draft_tokens"]  # noqa: E731
    print(f"\nacceptance full vocab {acc(full):.2f}, ASCII-only map {acc(pruned):.2f}")
    assert acc(full) > 0.95 and acc(pruned) < acc(full) - 0.2


@pytest.mark.slow
def test_bf16_maps_draft_through_vllms_kernel_losslessly(tmp_path):
    """In bf16 the pruned head scores through vLLM's prepacked CPU kernel (integration.linear, "auto"): the
    counting model's drafts stay right inside the map and the output stays that of no speculation in bf16; a
    null map scores through the model's compute_logits, just as right."""
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    model = build_tiny_mimo(tmp_path / "count", init="counting", head="token", vocab_size=384, hidden_size=384,
                            num_attention_heads=6, num_key_value_heads=2)
    prompts = ["abcdefgh", "0123", "QRS"]  # counting 20 tokens from these stays inside ASCII, i.e. the map
    narrow = _write_map(tmp_path / "ascii.pt", list(range(0, 128)) + SPECIALS)
    base = {"model": str(model), "prompts": prompts, "max_tokens": 20, "batch_sizes": [1, 3], "dtype": "bfloat16",
            "env": {"VLLM_FASTMTP_RECORD_DRAFTS": "1"}}
    ref = run_job({**base, "speculative_config": None}, tmp_path, "none_bf16")
    got = run_job({**base, "speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3,
                                                  "draft_vocab": {"maps": {"en": narrow}}}}, tmp_path, "pruned_bf16")
    assert got["outputs"] == ref["outputs"] and got["drafter"]["pick_dtype"] == "bfloat16"
    assert got["drafter"]["pick_kernel"] == "en:vllm"
    assert all(d < 128 or d in SPECIALS for _, drafts in got["drafts"] for d in drafts)
    m = got["metrics"]["3"]
    assert m["draft_tokens"] > 0 and m["accepted"] / m["draft_tokens"] > 0.9  # a wrong kernel drafts garbage
    # a null map (full vocabulary) drafts through the model's own compute_logits, not a prepacked lm_head copy
    full = run_job({**base, "speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3,
                                                   "draft_vocab": {"maps": {"en": None}}}}, tmp_path, "null_map_bf16")
    assert full["outputs"] == ref["outputs"]
    m = full["metrics"]["3"]
    assert m["draft_tokens"] > 0 and m["accepted"] / m["draft_tokens"] > 0.9
