"""The sort-free top-k/top-p of training.distill (vllm_fastmtp.integration.sampling) against vLLM's own sampler.

The mask is compared with vLLM's ``apply_top_k_top_p_pytorch`` (the CPU path) on random logits; end to end, a
seeded distill run through the processor must write the same answers as one through vLLM's sampler, on a random
tiny model sampled at T=1 (near-uniform over 384 ids, so a processor that cut nothing, or cut wrongly, writes
other tokens).
"""

import json
import subprocess

import pytest
import torch

from tests.training.test_distill_cli import REPO, distill_cmd, engine_env


def test_mask_matches_vllm_top_k_top_p():
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from vllm_fastmtp.integration.sampling import mask_top_k_top_p

    g = torch.Generator().manual_seed(0)
    for trial in range(100):
        rows, vocab = 8, 500
        logits = torch.randn(rows, vocab, generator=g) * (0.1 + 5 * torch.rand(1, generator=g))
        k = torch.randint(1, 80, (rows,), generator=g)
        k[0] = vocab  # the whole vocabulary: top-p alone
        p = 0.01 + 0.99 * torch.rand(rows, generator=g)
        p[1] = 1.0  # top-k only
        want = apply_top_k_top_p_pytorch(logits.clone(), k, p, allow_cpu_sync=True)
        got = mask_top_k_top_p(logits.clone(), k, p)
        assert torch.equal(torch.isinf(got), torch.isinf(want)), f"trial {trial}"
        assert torch.equal(got[~torch.isinf(got)], logits[~torch.isinf(got)])  # kept logits untouched


def test_split_and_param_check():
    from vllm import SamplingParams

    from vllm_fastmtp.integration.sampling import EXTRA_ARG, TopKTopPLogitsProcessor, split_top_k_top_p

    kw, extra = split_top_k_top_p({"temperature": 0.6, "top_k": 20, "top_p": 0.95, "max_tokens": 9})
    assert kw == {"temperature": 0.6, "top_k": 0, "top_p": 1.0, "max_tokens": 9} and extra == {EXTRA_ARG: [20, 0.95]}
    for only in ({"top_k": 20, "top_p": 1.0}, {"top_k": 0, "top_p": 0.9}):  # nothing to gain: vLLM keeps them
        assert split_top_k_top_p(only) == (only, None)
    TopKTopPLogitsProcessor.validate_params(SamplingParams(extra_args={EXTRA_ARG: [20, 0.95]}))
    with pytest.raises(ValueError, match=r"top_k >= 1, top_p in \(0, 1\]"):
        TopKTopPLogitsProcessor.validate_params(SamplingParams(extra_args={EXTRA_ARG: [0, 0.95]}))


@pytest.mark.slow
def test_distill_fast_top_k_top_p_writes_what_vllm_sampler_writes(tmp_path):
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    model = build_tiny_mimo(tmp_path / "model", vocab_size=384, hidden_size=384, num_attention_heads=6,
                            num_key_value_heads=2)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(6)))
    answers = {}
    for how in ("vllm", "fast"):
        out = tmp_path / f"{how}.jsonl"
        cmd = distill_cmd(model, [str(prompts)], out, "--max-tokens", "24", "--temperature", "1.0", "--top-k", "8",
                          "--top-p", "0.7", "--top-k-top-p", how)
        run = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, run.stderr[-3000:]
        records = [json.loads(line) for line in out.read_text().splitlines()]
        answers[how] = {r["id"]: [m["content"] for m in r["messages"] if m["role"] == "assistant"] for r in records}
        meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
        assert ("logits_processors" in meta["engine"]) == (how == "fast")
    assert len(answers["fast"]) == 6 and len({a[0] for a in answers["fast"].values()}) == 6  # really sampled
    assert answers["fast"] == answers["vllm"]
