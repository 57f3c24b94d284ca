"""Pieces of training.distill that need no engine: sharding, seeds, engine pass-through, raw prompts."""

import json
import os
import shutil

import pytest

from training.distill import (
    CPU_KV_CACHE_GIB, DistillError, build_parser, default_cpu_kv_cache, engine_kwargs, make_renderer, make_work, request_seed,
    validate_args,
)
from training.prompts import Conversation, PromptFormatError, load_inputs


def conv(i):
    return Conversation(id=f"f.jsonl:{i}:h", source="f.jsonl", category="general", where=f"f.jsonl:{i}", user_turns=[f"q{i}"])


def test_shards_partition_the_work_and_samples_get_ids():
    convs = [conv(i) for i in range(50)]
    full = {w.id for w in make_work(convs, 2, None)}
    assert len(full) == 100 and "f.jsonl:0:h#s1" in full
    parts = [{w.id for w in make_work(convs, 2, (i, 3))} for i in range(3)]
    assert set().union(*parts) == full and sum(map(len, parts)) == 100  # disjoint and complete
    assert {w.id for w in make_work(convs, 1, None)} == {c.id for c in convs}


def test_request_seeds_depend_on_item_and_turn_only():
    assert request_seed(0, "a", 0) == request_seed(0, "a", 0)
    assert len({request_seed(0, "a", 0), request_seed(0, "a", 1), request_seed(0, "b", 0), request_seed(1, "a", 0)}) == 4


def test_engine_arguments_pass_through_only_when_set():
    args = build_parser().parse_args(
        ["--model", "m", "--prompts", "p", "--out", "o", "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
         "--engine-arg", "enable_prefix_caching=false", "--engine-arg", 'speculative_config={"method": "ngram"}',
         "--engine-arg", "kv_cache_dtype=fp8", "--top-k-top-p", "vllm"]
    )
    kw = engine_kwargs(args)
    assert kw == {"model": "m", "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "enable_prefix_caching": False,
                  "speculative_config": {"method": "ngram"}, "kv_cache_dtype": "fp8"}
    # the default on CPU (no CUDA here): the sort-free top-k/top-p processor, added to the user's own processors
    args.top_k_top_p = "auto"
    args.engine_arg = ['logits_processors=["my.mod:Proc"]']
    assert engine_kwargs(args)["logits_processors"] == ["my.mod:Proc", "vllm_fastmtp.integration.sampling:TopKTopPLogitsProcessor"]
    args.top_p = 1.0  # top-k alone: vLLM does not sort, nothing to add
    assert engine_kwargs(args)["logits_processors"] == ["my.mod:Proc"]
    args.engine_arg = ["novalue"]
    with pytest.raises(DistillError, match="expected KEY=VALUE"):
        engine_kwargs(args)
    for bad, msg in ((["--max-tokens", "0"], "--max-tokens"), (["--shard", "3/2"], "--shard"),
                     (["--chat-template-kwargs", "[1]"], "JSON object"), (["--top-p", "0"], "--top-p")):
        with pytest.raises(DistillError, match=msg):
            validate_args(build_parser().parse_args(["--model", "m", "--prompts", "p", "--out", "o", *bad]))


def test_native_dtype_is_bf16_only_where_the_hardware_computes_it():
    """--dtype native: bf16 where native (CUDA, AVX-512 BF16, AMX), fp32 where bf16 would be emulated (slower)."""
    from vllm_fastmtp.precision import bf16_native

    args = build_parser().parse_args(["--model", "m", "--prompts", "p", "--out", "o", "--dtype", "native"])
    assert engine_kwargs(args)["dtype"] == ("bfloat16" if bf16_native() else "float32")
    args.dtype = "float16"  # any other value passes through to vLLM unchanged
    assert engine_kwargs(args)["dtype"] == "float16"


def test_raw_prompts_only_when_allowed(tiny_random_mimo, tmp_path):
    from transformers import AutoTokenizer

    model = tmp_path / "m"
    shutil.copytree(tiny_random_mimo, model)
    (model / "chat_template.jinja").unlink()
    tok = AutoTokenizer.from_pretrained(str(model))
    base = ["--model", str(model), "--prompts", "p", "--out", "o"]
    args = build_parser().parse_args(base)
    validate_args(args)
    with pytest.raises(DistillError, match="no chat template"):
        make_renderer(tok, args)
    args = build_parser().parse_args([*base, "--allow-raw-prompts"])
    validate_args(args)
    r = make_renderer(tok, args)
    ids = r([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "?"}])
    assert tok.decode(ids) == "hi\n\nyo\n\n?\n\n"


def test_hf_dataset_input_needs_the_datasets_package():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(PromptFormatError, match="pip install datasets"):
            load_inputs(["hf:allenai/tulu-3-sft-mixture@train:general"])
    else:
        pytest.skip("datasets is installed; loading a hub dataset needs a network")


def test_cpu_kv_cache_is_sized_unless_the_user_sized_it(monkeypatch):
    """No CUDA here: without a size vLLM's CPU worker wants 92 % of the node's memory and may refuse to start."""
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    default_cpu_kv_cache({"gpu_memory_utilization": 0.5})
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ
    default_cpu_kv_cache({"model": "m"})
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == str(CPU_KV_CACHE_GIB)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")
    default_cpu_kv_cache({"model": "m"})
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2"
