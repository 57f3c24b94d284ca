"""Train/serve parity: the K drafts the training-side head computes for a context equal the drafts vLLM's fastmtp
proposer makes for the same context, for both step-1 hidden-state conventions.

Training side: training.mtp_head.draft_chain (transformers main model + the project's head module). Serving
side: real vLLM (CPU build) with the plugin, drafts recorded by the proposer (VLLM_FASTMTP_RECORD_DRAFTS=1).
Random float32 weights with non-trivial norm weights, so a convention mix-up changes the drafts.
"""

import pytest
import torch

from tests.fixtures.engine_job import run_job
from vllm_fastmtp.conventions import POST_NORM, PRE_NORM

K = 3
CONTEXTS = [[10 + i, 50 + 3 * i, 7 * i % 250, 99, 100 + i] * (1 + i % 3) for i in range(8)]


@pytest.fixture(scope="module")
def training_side(tiny_random_mimo):
    from safetensors.torch import load_file

    from training.finetune import load_main_model
    from training.mtp_head import MTPHead

    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    return main.eval(), head.eval()


def _vllm_first_drafts(model, hidden_state, tmp_path):
    job = {"model": str(model), "prompt_token_ids": CONTEXTS, "max_tokens": 2, "batch_sizes": [1],
           "speculative_config": {"method": "fastmtp", "num_speculative_tokens": K, "hidden_state": hidden_state},
           "env": {"VLLM_FASTMTP_RECORD_DRAFTS": "1"}}
    result = run_job(job, tmp_path, f"parity_{hidden_state}")
    first: dict[str, list[int]] = {}
    for req_id, drafts in result["drafts"]:
        first.setdefault(req_id, drafts)  # the first proposal of a request follows its prefill
    assert len(first) == len(CONTEXTS), result["drafts"]
    return list(first.values()), [out[0] for out in result["outputs"]["1"]]


@pytest.mark.slow
def test_training_head_drafts_equal_vllm_drafts(tiny_random_mimo, training_side, tmp_path):
    from training.mtp_head import draft_chain

    main, head = training_side
    chains = {}
    with torch.no_grad():
        for conv in (POST_NORM, PRE_NORM):
            chains[conv] = [draft_chain(main, head, ctx, K, conv) for ctx in CONTEXTS]
            vllm_drafts, vllm_first_tokens = _vllm_first_drafts(tiny_random_mimo, conv, tmp_path)
            for i, chain in enumerate(chains[conv]):
                assert chain[0] == vllm_first_tokens[i], f"{conv} context {i}: main-model token differs"
                assert chain[1:] == vllm_drafts[i], f"{conv} context {i}: training {chain[1:]} vs vLLM {vllm_drafts[i]}"
    # The convention matters on this model, so the equalities above really pin it.
    assert chains[POST_NORM] != chains[PRE_NORM]
