"""python -m training.finetune: head-only training, servable output, resume, DDP, named input errors."""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from training.data import NoAssistantTokensError, load_chat_jsonl
from training.finetune import (
    HEAD_ONLY_FILE,
    FinetuneConfigError,
    MissingMTPHeadError,
    build,
    parse_args,
    run,
)
from vllm_fastmtp.conventions import CONFIG_KEY, POST_NORM, PRE_NORM, hidden_state_from_config
from training.mtp_head import CHECKPOINT_PREFIX

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def write_chat(path: Path, n: int = 24, seed: int = 0, assistant: bool = True, length: int = 30) -> Path:
    rng = random.Random(seed)
    letters = "abcdefghij klmnop"
    with open(path, "w") as f:
        for _ in range(n):
            msgs = [{"role": "user", "content": "".join(rng.choice(letters) for _ in range(10))}]
            if assistant:
                msgs.append({"role": "assistant", "content": "".join(rng.choice(letters) for _ in range(length))})
            f.write(json.dumps({"messages": msgs, "category": "test"}) + "\n")
    return path


def args_for(model, data, out, *extra):
    return [
        "--model_path", str(model), "--train_file", str(data), "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--logging_steps", "1",
        "--use_cpu", "true", "--disable_tqdm", "true", "--seed", "0", *extra,
    ]


def cache_args(model, data, cache, out, *extra):
    """finetune flags over a prebuilt cache alone (no --train_file: nothing to rebuild); the tests' caches keep
    the main model's top-5."""
    argv = args_for(model, data, out, "--cache_dir", str(cache.dir), "--cache_top_n", "5", *extra)
    i = argv.index("--train_file")
    return argv[:i] + argv[i + 2 :]


def tensor_hashes(model_dir: Path) -> dict[str, str]:
    files = sorted(model_dir.glob("*.safetensors"))
    out = {}
    for fpath in files:
        with safe_open(str(fpath), "pt") as f:
            for k in f.keys():
                t = f.get_tensor(k)
                out[k] = hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest() + str(t.dtype)
    return out


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    return write_chat(tmp_path_factory.mktemp("data") / "train.jsonl")


@pytest.fixture(scope="module")
def trained(tiny_random_mimo, chat_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    fa, ta = parse_args(args_for(tiny_random_mimo, chat_file, out, "--max_steps", "4", "--export", "both",
                                 "--eval_fraction", "0.25", "--eval_strategy", "steps", "--eval_steps", "2"))
    res = run(fa, ta)
    return out, res


def test_main_weights_bit_identical_only_head_changes(tiny_random_mimo, trained):
    out, res = trained
    serve = Path(res["serve_dir"])
    before, after = tensor_hashes(tiny_random_mimo), tensor_hashes(serve)
    assert set(before) == set(after)
    changed = {k for k in before if before[k] != after[k]}
    head_keys = {k for k in before if k.startswith(CHECKPOINT_PREFIX)}
    assert changed and changed <= head_keys, changed - head_keys
    assert not any(k.startswith(CHECKPOINT_PREFIX) for k in set(before) - changed - head_keys)
    for k in before:
        if not k.startswith(CHECKPOINT_PREFIX):
            assert before[k] == after[k], k


def test_servable_dir_config_tokenizer_and_convention(tiny_random_mimo, trained):
    out, res = trained
    serve = Path(res["serve_dir"])
    cfg = json.loads((serve / "config.json").read_text())
    src = json.loads((tiny_random_mimo / "config.json").read_text())
    assert {k: v for k, v in cfg.items() if k != CONFIG_KEY} == src
    rec = cfg[CONFIG_KEY]
    assert hidden_state_from_config(cfg) == POST_NORM == rec["hidden_state"]
    assert rec["K"] == 3 and rec["beta"] == 0.6 and rec["loss"] == "ce" and rec["steps"] == 4
    assert rec["data"]["train"]["kept"] > 0
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (serve / name).is_file()
    # head-only export: exactly the head tensors, equal to the served ones
    head = load_file(str(out / HEAD_ONLY_FILE))
    served = load_file(str(serve / "model.safetensors"))
    assert set(head) == {k for k in served if k.startswith(CHECKPOINT_PREFIX)}
    for k, v in head.items():
        assert torch.equal(v, served[k])
    with safe_open(str(out / HEAD_ONLY_FILE), "pt") as f:
        assert json.loads(f.metadata()[CONFIG_KEY])["hidden_state"] == POST_NORM


def test_eval_logs_per_position_acceptance(trained):
    out, res = trained
    m = res["metrics"]
    for k in (1, 2, 3):
        assert 0.0 <= m[f"eval_accept_pos{k}"] <= 1.0
    assert m["eval_accept_pos1"] >= m["eval_accept_pos2"] >= m["eval_accept_pos3"]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_accept_pos1" in h]
    assert [h["step"] for h in evals] == [2, 4]


def test_sharded_checkpoint_and_pre_norm(tiny_random_mimo, chat_file, tmp_path):
    """Index-sharded source (head in its own shard and mixed into a main shard); pre-norm convention recorded."""
    src = tmp_path / "sharded"
    shutil.copytree(tiny_random_mimo, src)
    t = load_file(str(src / "model.safetensors"))
    (src / "model.safetensors").unlink()
    keys = sorted(t)
    head_keys = [k for k in keys if k.startswith(CHECKPOINT_PREFIX)]
    shard_a = {k: t[k] for k in keys if k not in head_keys[:5]}  # main + most of the head
    shard_b = {k: t[k] for k in head_keys[:5]}
    save_file(shard_a, str(src / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    save_file(shard_b, str(src / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    wmap = {**{k: "model-00001-of-00002.safetensors" for k in shard_a}, **{k: "model-00002-of-00002.safetensors" for k in shard_b}}
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": wmap}))
    out = tmp_path / "out"
    fa, ta = parse_args(args_for(src, chat_file, out, "--max_steps", "2", "--hidden_state", PRE_NORM))
    res = run(fa, ta)
    serve = Path(res["serve_dir"])
    idx = json.loads((serve / "model.safetensors.index.json").read_text())
    assert idx["weight_map"] == wmap
    assert idx["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in t.values())
    before, after = tensor_hashes(src), tensor_hashes(serve)
    assert all(before[k] == after[k] for k in before if not k.startswith(CHECKPOINT_PREFIX))
    assert any(before[k] != after[k] for k in head_keys)
    assert json.loads((serve / "config.json").read_text())[CONFIG_KEY]["hidden_state"] == PRE_NORM


def test_resume_continues_from_checkpoint(tiny_random_mimo, chat_file, tmp_path):
    """Interrupted after checkpoint-3 of 6 and resumed == an uninterrupted 6-step run."""
    common = ["--max_steps", "6", "--save_steps", "3", "--export", "head"]
    full = tmp_path / "full"
    run(*parse_args(args_for(tiny_random_mimo, chat_file, full, *common)))
    part = tmp_path / "part"
    run(*parse_args(args_for(tiny_random_mimo, chat_file, part, *common)))
    shutil.rmtree(part / "checkpoint-6")  # "interrupted" after step 3's checkpoint
    shutil.rmtree(part / "final")
    res = run(*parse_args(args_for(tiny_random_mimo, chat_file, part, *common, "--resume_from_checkpoint", "last")))
    assert res["steps"] == 6
    state = json.loads((part / "checkpoint-6" / "trainer_state.json").read_text())
    steps_logged = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps_logged == [1, 2, 3, 4, 5, 6]
    a, b = load_file(str(full / "final" / HEAD_ONLY_FILE)), load_file(str(part / "final" / HEAD_ONLY_FILE))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_time_budget_stops_with_a_checkpoint_and_resumes_to_the_same_head(tiny_random_mimo, chat_file, tmp_path):
    """--max_train_minutes ends a planned 6-step run after its first step with a checkpoint (not at a save_steps
    boundary); rerun with resume, it finishes the planned schedule and equals an uninterrupted run."""
    common = ["--max_steps", "6", "--save_steps", "100", "--export", "head"]
    full = tmp_path / "full"
    run(*parse_args(args_for(tiny_random_mimo, chat_file, full, *common)))
    part = tmp_path / "part"
    first = run(*parse_args(args_for(tiny_random_mimo, chat_file, part, *common, "--max_train_minutes", "1e-9")))
    assert (first["steps"], first["planned_steps"], first["stopped_by_time"]) == (1, 6, True)
    assert sorted(p.name for p in part.glob("checkpoint-*")) == ["checkpoint-1"]
    assert (part / "final" / HEAD_ONLY_FILE).is_file()  # what the chunk reached is exported
    rest = run(*parse_args(args_for(tiny_random_mimo, chat_file, part, *common, "--resume_from_checkpoint", "last",
                                    "--max_train_minutes", "60")))
    assert (rest["steps"], rest["stopped_by_time"]) == (6, False)
    a, b = load_file(str(full / "final" / HEAD_ONLY_FILE)), load_file(str(part / "final" / HEAD_ONLY_FILE))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_max_train_minutes_must_be_positive(tiny_random_mimo, chat_file, tmp_path):
    with pytest.raises(FinetuneConfigError, match="max_train_minutes must be > 0, got 0.0"):
        parse_args(args_for(tiny_random_mimo, chat_file, tmp_path / "o", "--max_train_minutes", "0"))


def test_config_file_yaml_with_flag_override(tiny_random_mimo, chat_file, tmp_path):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        f"model_path: {tiny_random_mimo}\ntrain_file: {chat_file}\noutput_dir: {tmp_path / 'o'}\n"
        "num_steps: 2\nbeta: 0.5\nmax_steps: 7\nuse_cpu: true\n"
    )
    fa, ta = parse_args([str(cfg), "--num_steps", "4"])
    assert fa.num_steps == 4 and fa.beta == 0.5 and ta.max_steps == 7
    # paper defaults
    assert ta.learning_rate == 5e-5 and getattr(ta.lr_scheduler_type, "value", ta.lr_scheduler_type) == "cosine"
    assert ta.warmup_steps == 0.05 and ta.adam_beta1 == 0.9 and ta.adam_beta2 == 0.95
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_path": "x", "no_such_option": 1}))
    with pytest.raises(FinetuneConfigError):
        parse_args([str(bad)])


# ---------------------------------------------------------------- bad input: named errors before training
def test_checkpoint_without_mtp_head(tiny_random_mimo, chat_file, tmp_path):
    src = tmp_path / "nohead"
    shutil.copytree(tiny_random_mimo, src)
    t = load_file(str(src / "model.safetensors"))
    save_file({k: v for k, v in t.items() if not k.startswith(CHECKPOINT_PREFIX)}, str(src / "model.safetensors"))
    with pytest.raises(MissingMTPHeadError, match="init_head"):
        build(*parse_args(args_for(src, chat_file, tmp_path / "o")))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("checkpoint-*"))


def test_data_without_assistant_turns(tiny_random_mimo, tmp_path):
    data = write_chat(tmp_path / "noasst.jsonl", assistant=False)
    with pytest.raises(NoAssistantTokensError):
        build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o")))


@pytest.mark.parametrize("k", ["0", "-1"])
def test_k_below_one(tiny_random_mimo, chat_file, tmp_path, k):
    with pytest.raises(FinetuneConfigError, match="num_steps"):
        build(*parse_args(args_for(tiny_random_mimo, chat_file, tmp_path / "o", "--num_steps", k)))


def test_overlong_sequences_truncated_or_dropped_with_counts(tiny_random_mimo, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_random_mimo))
    data = tmp_path / "mixed.jsonl"
    write_chat(data, n=6, length=20)
    with open(data, "a") as f:
        for _ in range(3):
            f.write(json.dumps({"messages": [{"role": "user", "content": "x" * 10},
                                             {"role": "assistant", "content": "y" * 400}]}) + "\n")
        f.write(json.dumps({"messages": [{"role": "user", "content": "z" * 300},
                                         {"role": "assistant", "content": "w"}]}) + "\n")
        f.write(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n")
    ex, rep = load_chat_jsonl(data, tok, max_len=128, overlong="truncate")
    assert (rep.lines, rep.kept, rep.truncated, rep.empty_after_truncation, rep.no_assistant) == (11, 9, 4, 1, 1)
    assert all(len(e.input_ids) <= 128 for e in ex)
    ex, rep = load_chat_jsonl(data, tok, max_len=128, overlong="drop")
    assert (rep.kept, rep.dropped_too_long, rep.truncated) == (6, 4, 0)
    # the model's own limit caps --max_seq_len, and the counts land in the recorded data info
    b = build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--max_seq_len", "128")))
    assert b.data_info["train"]["truncated"] == 4 and b.data_info["max_seq_len"] == 128


def test_assistant_mask_covers_assistant_turns_only(tiny_random_mimo):
    from transformers import AutoTokenizer

    from training.data import tokenize_conversation

    tok = AutoTokenizer.from_pretrained(str(tiny_random_mimo))
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi 你好"},
            {"role": "assistant", "content": "yo 好"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "ans"}]
    ex = tokenize_conversation(tok, msgs)
    assert tok.decode([i for i, m in zip(ex.input_ids, ex.loss_mask) if m]) == "yo 好<|im_end|>ans<|im_end|>"
    assert tok.decode(ex.input_ids) == tok.apply_chat_template(msgs, tokenize=False)


def test_init_head_uses_graft(tiny_random_mimo, chat_file, tmp_path):
    graft = pytest.importorskip("training.graft", reason="training.graft has not landed yet")
    if not hasattr(graft, "graft_mtp_head"):
        pytest.skip("training.graft.graft_mtp_head missing")
    src = tmp_path / "plain"
    shutil.copytree(tiny_random_mimo, src)
    t = load_file(str(src / "model.safetensors"))
    save_file({k: v for k, v in t.items() if not k.startswith(CHECKPOINT_PREFIX)}, str(src / "model.safetensors"))
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["Qwen2ForCausalLM"]
    cfg.pop("num_nextn_predict_layers", None)
    (src / "config.json").write_text(json.dumps(cfg))
    res = run(*parse_args(args_for(src, chat_file, tmp_path / "o", "--max_steps", "2", "--init_head", "last_layer")))
    served = load_file(str(Path(res["serve_dir"]) / "model.safetensors"))
    assert any(k.startswith(CHECKPOINT_PREFIX) for k in served)


# ---------------------------------------------------------------- data parallel
def test_torchrun_two_process_gloo(tiny_random_mimo, chat_file, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "training.finetune",
           *args_for(tiny_random_mimo, chat_file, out, "--max_steps", "3", "--ddp_backend", "gloo",
                     "--eval_fraction", "0.25", "--eval_strategy", "steps", "--eval_steps", "3")]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    res = json.loads((out / "finetune_result.json").read_text())
    assert res["steps"] == 3 and res["world_size"] == 2
    assert "eval_accept_pos1" in res["metrics"]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    before, after = tensor_hashes(tiny_random_mimo), tensor_hashes(Path(res["serve_dir"]))
    assert all(before[k] == after[k] for k in before if not k.startswith(CHECKPOINT_PREFIX))


def test_time_budget_under_torchrun_stops_every_rank_at_one_step(tiny_random_mimo, chat_file, tmp_path):
    """The ranks agree on the stop (an all-reduce of each rank's clock check): both end after step 1, no hang."""
    out = tmp_path / "ddp-time"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
           "-m", "training.finetune",
           *args_for(tiny_random_mimo, chat_file, out, "--max_steps", "4", "--ddp_backend", "gloo",
                     "--max_train_minutes", "1e-9", "--export", "head")]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    res = json.loads((out / "finetune_result.json").read_text())
    assert (res["steps"], res["planned_steps"], res["stopped_by_time"], res["world_size"]) == (1, 4, True, 2)
    assert sorted(q.name for q in out.glob("checkpoint-*")) == ["checkpoint-1"]


def test_export_dtype_bfloat16_rounds_head_file_and_served_dir_alike(tiny_random_mimo, chat_file, tmp_path):
    """--export_dtype bfloat16: a bf16 head file; the servable dir keeps its fp32 shards but holds the same rounding."""
    res = run(*parse_args(args_for(tiny_random_mimo, chat_file, tmp_path, "--max_steps", "1", "--export", "both",
                                   "--export_dtype", "bfloat16")))
    head = load_file(res["head_file"])
    served = load_file(str(Path(res["serve_dir"]) / "model.safetensors"))
    source = load_file(str(tiny_random_mimo / "model.safetensors"))
    assert head and {v.dtype for v in head.values()} == {torch.bfloat16}
    for k, v in head.items():
        assert served[k].dtype == source[k].dtype == torch.float32
        assert torch.equal(served[k], v.float())
    with pytest.raises(FinetuneConfigError, match="export_dtype must be one of"):
        parse_args(args_for(tiny_random_mimo, chat_file, tmp_path, "--export_dtype", "bf16"))
