"""The servable output of training.finetune runs in vLLM (plugin method fastmtp), and vLLM proposes exactly the
drafts `draft_chain` computes for the same contexts (float32, greedy, both hidden-state conventions)."""

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.engine_job import run_job
from training.finetune import load_main_model, parse_args, run
from tests.fixtures.tiny_demo import build_demo_model, self_generate
from vllm_fastmtp.conventions import hidden_state_from_config
from training.mtp_head import MTPHead, draft_chain

pytestmark = pytest.mark.slow
torch.set_num_threads(1)
K = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve_demo")
    model = build_demo_model(d / "model", seed=0, std=0.1)
    rows = self_generate(model, 72, max_new_tokens=24, seed=1)
    with open(d / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[:64])
    return d, model, rows[64:]


@pytest.mark.parametrize("hidden_state", ["post_norm", "pre_norm"])
def test_vllm_serves_trained_dir_and_drafts_match_draft_chain(demo, tmp_path, hidden_state):
    d, model, held_out = demo
    res = run(*parse_args([
        "--model_path", str(model), "--train_file", str(d / "train.jsonl"), "--output_dir", str(tmp_path / "ft"),
        "--hidden_state", hidden_state, "--max_steps", "60", "--num_train_epochs", "100",
        "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--save_strategy", "no",
        "--use_cpu", "true", "--disable_tqdm", "true",
    ]))
    serve = Path(res["serve_dir"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(serve))
    prompts = []
    for r in held_out:
        ids = tok.apply_chat_template([r["messages"][0]], add_generation_prompt=True)
        prompts.append(list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids))
    job = {"model": str(serve), "prompt_token_ids": prompts, "max_tokens": 24, "batch_sizes": [1],
           "speculative_config": {"method": "fastmtp", "num_speculative_tokens": K},
           "env": {"VLLM_FASTMTP_RECORD_DRAFTS": "1"}}
    out = run_job(job, tmp_path, f"serve_{hidden_state}", timeout=900)
    assert out["metrics"]["1"]["drafts"] > 0

    main = load_main_model(serve, torch.float32)
    head = MTPHead(main.config).eval()
    head.load_checkpoint_tensors(load_file(str(serve / "model.safetensors")))
    assert hidden_state_from_config(json.loads((serve / "config.json").read_text())) == hidden_state
    by_req = OrderedDict()
    for rid, drafts in out["drafts"]:
        by_req.setdefault(rid, []).append(drafts)
    compared = 0
    for drafts, prompt, gen in zip(by_req.values(), prompts, out["outputs"]["1"]):
        pos = 0
        for dr in drafts:
            if pos >= len(gen):
                break
            mine = draft_chain(main, head, prompt + gen[:pos], K, hidden_state)
            assert mine[0] == gen[pos]
            assert mine[1:] == dr, (prompt, pos)
            compared += 1
            a = 0
            while a < K and pos + 1 + a < len(gen) and dr[a] == gen[pos + 1 + a]:
                a += 1
            pos += 1 + a
    assert compared >= len(prompts)
