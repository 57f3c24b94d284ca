"""training.distill end to end with real vLLM on a tiny model, plus the refusals that come before any engine.

The model is the counting checkpoint (it continues any prompt by counting up) with an extra stop token a few
ids after '\\n', so every answer ends on its own after a few tokens and multi-turn conversations go on.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.distill import main, recover_output, DistillError

REPO = Path(__file__).resolve().parents[2]
ENGINE = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "512", "--distributed-executor-backend", "uni"]


@pytest.fixture(scope="module")
def stopping_model(tmp_path_factory):
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    path = build_tiny_mimo(
        tmp_path_factory.mktemp("distill_model"), init="counting", vocab_size=384, hidden_size=384,
        num_attention_heads=6, num_key_value_heads=2,
    )
    # Answers start after '\n' (id 10) and count up; id 14 stops them: 4 tokens per answer.
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 14], "bos_token_id": 256}))
    return path


def write_prompts(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"prompt": f"question number {i}"}) + "\n" for i in range(24)))
    multi = tmp_path / "multi.jsonl"
    multi.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"question_id": 7, "category": "writing", "turns": ["first question", "second question"]},
                {"messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "REFERENCE ANSWER THAT IS MUCH LONGER THAN WHAT THE MODEL SAYS"},
                    {"role": "user", "content": "times 3?"},
                ]},
                {"conversations": [{"from": "human", "value": "写一首诗"}, {"from": "gpt", "value": "REFERENCE"}]},
            ]
        )
        + "\n"
    )
    return [f"{plain}:math", str(multi)]


def distill_cmd(model, prompts, out, *extra):
    return [sys.executable, "-m", "training.distill", "--model", str(model), "--prompts", *prompts, "--out", str(out),
            "--max-tokens", "8", "--no-progress", *ENGINE, *extra]


def engine_env():
    return {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(REPO)}


def lines_of(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_kill9_then_resume_gives_every_prompt_once(stopping_model, tmp_path):
    from transformers import AutoTokenizer

    prompts = write_prompts(tmp_path)
    out = tmp_path / "data.jsonl"
    cmd = distill_cmd(stopping_model, prompts, out, "--chunk-size", "1")
    log = open(tmp_path / "run1.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=engine_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while lines_of(out) < 1:
        assert proc.poll() is None, f"run 1 ended before writing: {(tmp_path / 'run1.log').read_text()[-3000:]}"
        assert time.time() < deadline, "run 1 wrote nothing in 240 s"
        time.sleep(0.02)
    assert proc.poll() is None, "run 1 finished before it could be killed; the test proves nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = lines_of(out)
    assert 1 <= first < 27
    # A kill can land inside a write; plant the torn tail such a kill leaves.
    with open(out, "ab") as f:
        f.write(b'{"id": "plain.jsonl:99:torn", "messages": [{"role": "us')

    run2 = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=400)
    assert run2.returncode == 0, run2.stderr[-3000:]
    assert "partial last line" in run2.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]  # every line parses
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 27  # 24 plain + 3 multi-turn, each exactly once
    assert not any(i.endswith("torn") for i in ids)
    stats = json.loads((tmp_path / "data.jsonl.stats.json").read_text())
    assert stats["run"]["skipped_existing"] == first and stats["run"]["generated"] == 27 - first
    assert stats["file"]["records"] == 27 and stats["file"]["per_category"]["math"]["records"] == 24

    by_origin = {r["origin"].rsplit("/", 1)[-1]: r for r in records}
    assert all(r["category"] == "math" and r["source"] == "plain.jsonl" for r in records if r["source"] == "plain.jsonl")
    turns = by_origin["multi.jsonl:1"]
    assert turns["category"] == "writing" and turns["finish_reasons"] == ["stop", "stop"] and turns["complete"]
    assert [m["role"] for m in turns["messages"]] == ["user", "assistant", "user", "assistant"]
    oa = by_origin["multi.jsonl:2"]
    assert [m["role"] for m in oa["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert "REFERENCE" not in json.dumps([r["messages"] for r in records])
    # Turn 2 was conditioned on the model's own first answer: its prompt is exactly that conversation.
    tok = AutoTokenizer.from_pretrained(str(stopping_model))
    for r in (turns, oa):
        ctx = r["messages"][:-1]
        text = tok.apply_chat_template(ctx, tokenize=False, add_generation_prompt=True)
        assert r["prompt_tokens"][1] == len(tok(text, add_special_tokens=False)["input_ids"])
        assert r["completion_tokens"] == [4, 4]
        assert r["total_tokens"] == r["prompt_tokens"][1] + 4
        assert r["sampling"]["temperature"] == 0.6 and r["sampling"]["top_k"] == 20 and r["model"] == str(stopping_model.resolve())

    # The file curates as is, and the fine-tuning loader reads every conversation with assistant tokens.
    from training import curate
    from training.data import load_chat_jsonl

    curated = tmp_path / "curated.jsonl"
    assert curate.main(["--in", str(out), "--out", str(curated), "--no-dedup"]) == 0
    assert len(curated.read_text().splitlines()) == 27
    examples, report = load_chat_jsonl(curated, tok, max_len=512)
    assert len(examples) == 27 and all(sum(e.loss_mask) > 0 for e in examples)

    # A third run has nothing to do and starts no engine.
    before = out.read_bytes()
    t0 = time.time()
    run3 = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=120)
    assert run3.returncode == 0 and "0 to generate" in run3.stderr
    assert out.read_bytes() == before and "Initializing" not in run3.stderr


def test_refusals_before_generation(stopping_model, tmp_path, capsys):
    prompts = write_prompts(tmp_path)
    out = tmp_path / "data.jsonl"
    base = ["--model", str(stopping_model), "--prompts", *prompts, "--out", str(out), "--max-tokens", "8", *ENGINE]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": "oops"\n')
    assert main([*base[:3], str(bad), *base[5:]]) == 2
    assert "bad.jsonl:2: malformed JSON" in capsys.readouterr().err

    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "x"}\n')
    assert main([*base[:3], str(odd), *base[5:]]) == 2
    assert "odd.jsonl:1: unknown format" in capsys.readouterr().err

    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"turns": ["fine"]}\n{"turns": [""]}\n')
    assert main([*base[:3], str(empty), *base[5:]]) == 2
    assert "empty.jsonl:2: empty prompt" in capsys.readouterr().err

    no_template = tmp_path / "no_template"
    shutil.copytree(stopping_model, no_template)
    (no_template / "chat_template.jinja").unlink()
    assert main([*base[:1], str(no_template), *base[2:]]) == 2
    err = capsys.readouterr().err
    assert "no chat template" in err and "--allow-raw-prompts" in err and str(no_template) in err

    # An output from another run (different sampling) is refused and left untouched.
    out.write_text('{"id": "x"}\n')
    assert main(base) == 2
    assert "has no sidecar" in capsys.readouterr().err
    meta = tmp_path / "data.jsonl.meta.json"
    from training.distill import build_parser, check_or_write_meta, prepare

    out.unlink()
    _, _, _, m = prepare(build_parser().parse_args(base))
    check_or_write_meta(out, m)
    out.write_text('{"id": "x"}\n')
    assert main([*base, "--temperature", "0.7"]) == 2
    err = capsys.readouterr().err
    assert "different run" in err and '"temperature": 0.6' in err and '"temperature": 0.7' in err
    assert out.read_text() == '{"id": "x"}\n' and json.loads(meta.read_text())["sampling"]["temperature"] == 0.6
    other = tmp_path / "more.jsonl"
    other.write_text('{"prompt": "extra"}\n')
    assert main([*base[:5], str(other), *base[5:]]) == 2
    assert "inputs:" in capsys.readouterr().err
    # the sidecar is matched on the weights, not the path: a copy elsewhere resumes, other weights do not
    from training.distill import DistillError

    moved = shutil.copytree(stopping_model, tmp_path / "moved")
    moved_args = build_parser().parse_args([*base[:1], str(moved), *base[2:]])
    m2 = prepare(moved_args)[3]
    assert m2["model"] != m["model"] and m2["model_weights"] == m["model_weights"] is not None
    check_or_write_meta(out, m2)  # no refusal
    from safetensors.torch import load_file, save_file

    shard = next(Path(moved).glob("*.safetensors"))
    w = load_file(str(shard))
    name = next(n for n in w if not n.startswith("model.mtp"))
    w[name] = w[name] + 1
    save_file(w, str(shard))
    with pytest.raises(DistillError, match="model_weights"):
        check_or_write_meta(out, prepare(moved_args)[3])


def test_recover_output_cuts_torn_tail_and_refuses_corruption(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "mess')
    assert recover_output(out) == {"a", "b"}
    assert out.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    out.write_bytes(b'{"id": "a"}\n{"id": "b"\n{"id": "c"}\n')
    with pytest.raises(DistillError, match="o.jsonl:2: corrupted line"):
        recover_output(out)


@pytest.mark.slow
def test_data_parallel_replicas_share_the_work(stopping_model, tmp_path):
    plain = tmp_path / "dp.jsonl"
    plain.write_text("".join(json.dumps({"prompt": f"item {i}"}) + "\n" for i in range(6)))
    out = tmp_path / "dp_out.jsonl"
    cmd = distill_cmd(stopping_model, [str(plain)], out, "--chunk-size", "2", "--data-parallel-size", "2", "--n", "2")
    run = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 12  # 6 prompts x 2 samples
    assert {i.rsplit("#", 1)[1] for i in ids} == {"s0", "s1"} and {r["sample_index"] for r in records} == {0, 1}
    stats = json.loads((tmp_path / "dp_out.jsonl.stats.json").read_text())
    per = stats["run"]["conversations_per_replica"]
    assert set(per) <= {"0", "1"} and sum(per.values()) == 12


def test_recover_output_drops_unparsable_last_complete_line(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"id": "a"}\n{"id": "b", "mes\n')
    assert recover_output(out) == {"a"}
    assert out.read_bytes() == b'{"id": "a"}\n'
    assert recover_output(tmp_path / "missing.jsonl") == set()


@pytest.mark.slow
def test_after_cut_continue_asks_the_next_turn_after_a_cut_answer(stopping_model, tmp_path, capsys):
    """Answers here end on their own after 4 tokens; --max-tokens 2 cuts every one. By default a cut turn ends the
    conversation; --after-cut continue asks the second question after it (what benchmarks.run does with a token cap),
    and the sidecar records it, so a resume with the other setting is refused."""
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"turns": [f"first {i}", f"second {i}"]}) + "\n" for i in range(3)))
    runs = {}
    for mode in ("stop", "continue"):
        out = tmp_path / f"{mode}.jsonl"
        cmd = distill_cmd(stopping_model, [str(two)], out, "--max-tokens", "2", "--after-cut", mode)
        run = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=500)
        assert run.returncode == 0, run.stderr[-3000:]
        runs[mode] = [json.loads(line) for line in out.read_text().splitlines()]
        meta = json.loads((tmp_path / f"{mode}.jsonl.meta.json").read_text())
        assert meta.get("after_cut") == (None if mode == "stop" else "continue")
    for rec in runs["stop"]:
        assert rec["finish_reasons"] == ["length"] and [m["role"] for m in rec["messages"]] == ["user", "assistant"]
    for rec in runs["continue"]:
        assert rec["finish_reasons"] == ["length", "length"] and not rec["complete"]
        assert [m["role"] for m in rec["messages"]] == ["user", "assistant", "user", "assistant"]
        assert rec["messages"][2]["content"].startswith("second") and rec["completion_tokens"] == [2, 2]
    # the same first turns were sampled the same way (per-request seeds): only the second turn was added
    assert [r["messages"][1] for r in runs["stop"]] == [r["messages"][1] for r in runs["continue"]]
    assert main(distill_cmd(stopping_model, [str(two)], tmp_path / "continue.jsonl", "--max-tokens", "2")[3:]) == 2
    assert 'after_cut: existing "continue" vs now null' in capsys.readouterr().err
