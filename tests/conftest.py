"""Shared fixtures: tiny MiMo checkpoints built on disk (nothing can be downloaded here)."""

import os

import pytest

# Real vLLM on CPU: in-process engine (fast start), small KV cache.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def tiny_random_mimo(tmp_path_factory):
    """A float32 random-weight MiMo checkpoint (byte tokenizer, vocab 384, hidden 64, one MTP layer)."""
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    return build_tiny_mimo(tmp_path_factory.mktemp("tiny_random"), init="random", seed=0)


@pytest.fixture(scope="session")
def tiny_counting_mimo(tmp_path_factory):
    """Main model counts up (t -> t+1); the MTP head drafts from the HIDDEN path only."""
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    return build_tiny_mimo(
        tmp_path_factory.mktemp("tiny_counting_hidden"),
        init="counting",
        head="hidden",
        vocab_size=384,
        hidden_size=384,
        num_attention_heads=6,
        num_key_value_heads=2,
    )
