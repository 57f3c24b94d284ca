"""training.graft: Llama/Qwen2 → MiMo format must not change a single main-model output, and the head must
have the layout vLLM's MiMo MTP and the project's MTPHead load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.graft import (
    MTP_PREFIX,
    ExistingMTPHeadError,
    GraftError,
    OutputNotEmptyError,
    UnsupportedArchitectureError,
    graft_mtp_head,
    main,
)
from tests.fixtures.tiny_checkpoint import build_byte_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _tiny_source(out: Path, model_type: str = "llama", tie: bool = False, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    kw = dict(
        vocab_size=384, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=tie, rms_norm_eps=1e-6,
    )
    if model_type == "llama":
        model = LlamaForCausalLM(LlamaConfig(**kw))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**kw))
    with torch.no_grad():  # non-trivial norms so that a wrong norm mapping shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(str(out))
    build_byte_tokenizer(out, 384)
    return out


def _logits(model_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        return m(ids).logits


@pytest.mark.parametrize("tie", [False, True])
def test_llama_becomes_qwen2_with_identical_logits(tmp_path, tie):
    src = _tiny_source(tmp_path / "src", "llama", tie=tie)
    out = graft_mtp_head(src, tmp_path / "out")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["MiMoForCausalLM"]
    assert cfg["model_type"] == "qwen2" and cfg["num_nextn_predict_layers"] == 1
    assert cfg["tie_word_embeddings"] is tie
    assert "quantization_config" not in cfg and "attention_bias" not in cfg
    t = load_file(str(out / "model.safetensors"))
    assert torch.count_nonzero(t["model.layers.0.self_attn.q_proj.bias"]) == 0
    assert torch.equal(t["lm_head.weight"], t["model.embed_tokens.weight"]) is tie
    ids = torch.randint(0, 384, (2, 17), generator=torch.Generator().manual_seed(1))
    ref, got = _logits(src, ids), _logits(out, ids)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    # tokenizer and chat template travel with the model
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out)).chat_template


def test_qwen2_source_keeps_its_biases(tmp_path):
    src = _tiny_source(tmp_path / "src", "qwen2")
    out = graft_mtp_head(src, tmp_path / "out", dtype="float32")
    src_t = load_file(str(src / "model.safetensors"))
    t = load_file(str(out / "model.safetensors"))
    assert torch.equal(t["model.layers.1.self_attn.k_proj.bias"], src_t["model.layers.1.self_attn.k_proj.bias"])
    assert torch.count_nonzero(t["model.layers.1.self_attn.k_proj.bias"]) > 0
    ids = torch.randint(0, 384, (1, 9))
    torch.testing.assert_close(_logits(out, ids), _logits(src, ids), rtol=1e-6, atol=1e-6)


def test_last_layer_init_copies_the_last_block_and_loads_into_mtp_head(tmp_path):
    from transformers import AutoConfig

    from training.mtp_head import MTPHead

    src = _tiny_source(tmp_path / "src", "llama")
    out = graft_mtp_head(src, tmp_path / "out", init="last_layer")
    t = load_file(str(out / "model.safetensors"))
    last = "model.layers.2."
    for k in ("self_attn.q_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
        assert torch.equal(t[MTP_PREFIX + k], t[last + k]), k
    for k in ("hidden_layernorm", "token_layernorm", "final_layernorm"):
        assert torch.equal(t[f"{MTP_PREFIX}{k}.weight"], t["model.norm.weight"])
    eye = torch.eye(64)
    assert torch.equal(t[MTP_PREFIX + "input_proj.weight"], torch.cat([eye, eye], 1))
    head = MTPHead(AutoConfig.from_pretrained(str(out)))
    head.load_checkpoint_tensors(t)  # raises on any missing/unexpected/mis-shaped tensor


def test_random_init_and_dtype(tmp_path):
    src = _tiny_source(tmp_path / "src", "llama")
    out = graft_mtp_head(src, tmp_path / "out", init="random", dtype="bfloat16")
    t = load_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in t.values())
    assert not torch.equal(t[MTP_PREFIX + "self_attn.q_proj.weight"], t["model.layers.2.self_attn.q_proj.weight"])
    assert t[MTP_PREFIX + "input_proj.weight"].shape == (64, 128)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_trained_head_file_is_grafted_with_its_convention_and_bad_files_are_refused(tmp_path):
    """A head exported by training.finetune (--export head) replaces the fresh head, and its fastmtp record
    reaches config.json (the plugin reads the hidden-state convention from there)."""
    from training.finetune import export_head_only
    from training.graft import HeadFileError
    from vllm_fastmtp.conventions import hidden_state_from_config

    src = _tiny_source(tmp_path / "src", "llama")
    donor = load_file(str(graft_mtp_head(src, tmp_path / "donor", init="random") / "model.safetensors"))
    head = {k: v.to(torch.bfloat16) for k, v in donor.items() if k.startswith(MTP_PREFIX)}
    good = export_head_only(tmp_path / "head.safetensors", head, {"hidden_state": "pre_norm", "K": 3})
    out = graft_mtp_head(src, tmp_path / "out", head_file=good)
    t = load_file(str(out / "model.safetensors"))
    for k, v in head.items():
        assert torch.equal(t[k], v.float()), k
    cfg = json.loads((out / "config.json").read_text())
    assert hidden_state_from_config(cfg) == "pre_norm" and cfg["fastmtp"]["K"] == 3

    short = dict(head)
    short.pop(MTP_PREFIX + "input_proj.weight")
    wide = dict(head, **{MTP_PREFIX + "input_proj.weight": torch.zeros(64, 64)})
    pickled = tmp_path / "head.pt"
    torch.save(head, pickled)
    cases = [
        (export_head_only(tmp_path / "short.safetensors", short, {}), "missing .*input_proj"),
        (export_head_only(tmp_path / "wide.safetensors", wide, {}), r"input_proj.weight has shape \(64, 64\); this model needs \(64, 128\)"),
        (pickled, "expected an existing .safetensors head file"),
    ]
    for i, (bad, msg) in enumerate(cases):
        with pytest.raises(HeadFileError, match=msg):
            graft_mtp_head(src, tmp_path / f"bad{i}", head_file=bad)
        assert not (tmp_path / f"bad{i}").exists()  # nothing written


def test_existing_head_is_refused_unless_forced(tmp_path):
    src = _tiny_source(tmp_path / "src", "llama")
    first = graft_mtp_head(src, tmp_path / "first")
    with pytest.raises(ExistingMTPHeadError, match="already has an MTP head"):
        graft_mtp_head(first, tmp_path / "second")
    assert not (tmp_path / "second").exists()
    again = graft_mtp_head(first, tmp_path / "forced", init="random", force=True)
    t = load_file(str(again / "model.safetensors"))
    assert sum(k.startswith("model.mtp_layers.") for k in t) == sum(k.startswith("model.mtp_layers.") for k in load_file(str(first / "model.safetensors")))


def test_non_empty_output_is_refused_and_left_untouched(tmp_path):
    src = _tiny_source(tmp_path / "src", "llama")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputNotEmptyError, match=str(out)):
        graft_mtp_head(src, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_unsupported_architectures_are_named(tmp_path):
    src = _tiny_source(tmp_path / "src", "llama")
    cfg = json.loads((src / "config.json").read_text())
    bad = tmp_path / "gpt2"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedArchitectureError, match=r"config\.json: field model_type is 'gpt2'"):
        graft_mtp_head(bad, tmp_path / "o1")
    biased = tmp_path / "biased"
    biased.mkdir()
    (biased / "config.json").write_text(json.dumps({**cfg, "attention_bias": True}))
    with pytest.raises(UnsupportedArchitectureError, match="attention_bias"):
        graft_mtp_head(biased, tmp_path / "o2")
    odd = tmp_path / "odd_head_dim"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({**cfg, "head_dim": 16}))
    with pytest.raises(UnsupportedArchitectureError, match="head_dim"):
        graft_mtp_head(odd, tmp_path / "o3")
    with pytest.raises(GraftError, match="does not exist"):
        graft_mtp_head(tmp_path / "nowhere", tmp_path / "o4")
    with pytest.raises(GraftError, match="init is 'zeros'"):
        graft_mtp_head(src, tmp_path / "o5", init="zeros")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_cli_reports_errors_with_exit_code_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    src = _tiny_source(tmp_path / "src", "llama")
    assert main([str(src), str(tmp_path / "out"), "--init", "random"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


_VLLM_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if __name__ == "__main__":
        from vllm import LLM, SamplingParams
        path, k = sys.argv[1], int(sys.argv[2])
        spec = {"method": "mtp", "num_speculative_tokens": k} if k else None
        llm = LLM(model=path, distributed_executor_backend="uni", enforce_eager=True, max_model_len=256,
                  speculative_config=spec, dtype="float32")
        outs = llm.generate(["Hello there", "abc"], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
        print("RESULT " + json.dumps([list(o.outputs[0].token_ids) for o in outs]))
    """
)


def run_vllm_greedy(model: Path, k: int, tmp_path: Path) -> list[list[int]]:
    script = tmp_path / "vllm_greedy.py"
    script.write_text(_VLLM_SCRIPT)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run([sys.executable, str(script), str(model), str(k)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_vllm_serves_grafted_tied_llama_with_mtp_losslessly(tmp_path):
    src = _tiny_source(tmp_path / "src", "llama", tie=True)
    out = graft_mtp_head(src, tmp_path / "out")
    plain = run_vllm_greedy(out, 0, tmp_path)
    spec = run_vllm_greedy(out, 2, tmp_path)
    assert all(len(t) == 12 for t in plain)
    assert spec == plain
