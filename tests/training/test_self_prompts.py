"""training.self_prompts: the pre-query cut, each filter, the refusals before any engine, and a real vLLM run.

The engine run uses the counting checkpoint (it continues any text by counting up one byte id at a time) with '{'
as a stop token: every candidate is the same request, the bytes after the pre-query's '\\n' (or after an opener's
last byte) up to 'z', ended on its own. So the first is kept and the others are repeats, whatever the seeds.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from benchmarks.questions import benchmark_turns, bundled_paths
from training.public_prompts import language
from training.self_prompts import Keep, SelfPromptsError, main, opener_of, pre_query

REPO = Path(__file__).resolve().parents[2]
ASK = "How do I keep basil alive on a windowsill through the winter months?"


def test_pre_query_is_the_template_up_to_the_users_words(tiny_random_mimo):
    tok = AutoTokenizer.from_pretrained(tiny_random_mimo)
    prefix = pre_query(tok)
    full = tok.apply_chat_template([{"role": "user", "content": ASK}], tokenize=False)
    assert full.startswith(prefix) and full[len(prefix):].startswith(ASK)
    assert prefix.endswith("user\n")
    with_system = pre_query(tok, "Be brief.")
    assert "Be brief." in with_system and with_system.endswith("user\n")


def test_pre_query_refuses_a_template_that_rewrites_the_users_words(tiny_random_mimo):
    tok = AutoTokenizer.from_pretrained(tiny_random_mimo)
    tok.chat_template = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(SelfPromptsError, match="verbatim"):
        pre_query(tok)
    tok.chat_template = None
    with pytest.raises(SelfPromptsError, match="cannot render"):
        pre_query(tok)


def test_each_filter_drops_what_it_names():
    keep = Keep(exclude={"an earlier prompt asked before, word for word."}, near_dup=0.7)
    bench = next(t for t in benchmark_turns(bundled_paths()) if 40 <= len(t) <= 400 and language(t) == "en")
    cases = [
        (ASK, "length", "cut"),
        ("Too short", "stop", "length"),
        ("Расскажи мне, пожалуйста, о погоде в Москве сегодня.", "stop", "language"),
        ("tell me more " * 20, "stop", "loop"),
        (bench, "stop", "benchmark"),
        ("An earlier prompt asked before, word for word.", "stop", "repeat"),
        (ASK, "stop", None),
        (ASK.upper(), "stop", "repeat"),  # normalised
        (ASK.replace("winter months", "winter month"), "stop", "near-duplicate"),
        ("Write a short poem about the sea at night, in four lines.", "stop", None),
        ("请用三句话介绍一下长城的历史和它的意义。", "stop", None),
    ]
    for text, finish, why in cases:
        assert keep.reason(text, finish) == why, text
    assert not keep(ASK, "stop") and keep.reasons == {"repeat": 1}


def test_openers_are_drawn_per_candidate_reproducibly():
    words = ["Write", "Explain", "Imagine"]
    draws = [opener_of(words, 0, i) for i in range(60)]
    assert draws == [opener_of(words, 0, i) for i in range(60)] and set(draws) == set(words)
    assert draws != [opener_of(words, 1, i) for i in range(60)]
    assert opener_of([], 0, 5) == ""


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "training.self_prompts", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env)


def test_refusals_before_any_engine(tmp_path, tiny_random_mimo):
    out = tmp_path / "p.jsonl"
    for args, msg in [
        (["--n", "0"], "--n must be >= 1"),
        (["--n", "5", "--max-candidates", "2"], "is below --n"),
        (["--n", "5", "--top-p", "0"], "--top-p"),
        (["--n", "5", "--exclude", tmp_path / "missing.jsonl"], "no such file"),
    ]:
        with pytest.raises(SystemExit):
            main(["--model", str(tiny_random_mimo), "--out", str(out), *map(str, args)])
    r = run_cli("--model", tiny_random_mimo, "--out", tmp_path / "no" / "p.jsonl", "--n", "3")
    assert r.returncode == 2 and "no such directory" in r.stderr
    assert not out.exists()


def test_real_engine_writes_the_kept_prompts_and_their_counts(tmp_path_factory, tmp_path):
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo
    from tests.training.test_distill_cli import engine_env

    model = build_tiny_mimo(
        tmp_path_factory.mktemp("self_prompts_model"), init="counting", vocab_size=384, hidden_size=384,
        num_attention_heads=6, num_key_value_heads=2,
    )
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, ord("{")]}))
    out = tmp_path / "self.jsonl"
    r = run_cli("--model", model, "--out", out, "--n", "2", "--max-candidates", "3", "--max-tokens", "160",
                "--dtype", "float32", "--max-model-len", "512", env=engine_env())
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [q["question_id"] for q in rows] == ["self-0-0"] and rows[0]["category"] == "self"
    assert rows[0]["turns"][0].endswith("0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz")
    stats = json.loads((tmp_path / "self.jsonl.stats.json").read_text())
    assert stats["candidates"] == 3 and stats["kept"] == 1 and stats["filters"] == {"kept": 1, "repeat": 2}
    assert "1 kept from 3 candidates" in r.stderr
    # with an opener the model goes on from its last byte, and the prompt starts with it
    r = run_cli("--model", model, "--out", out, "--n", "1", "--openers", "AB", "--max-tokens", "160",
                "--dtype", "float32", "--max-model-len", "512", env=engine_env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(out.read_text())["turns"] == ["ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz"]
    assert json.loads((tmp_path / "self.jsonl.stats.json").read_text())["openers"] == ["AB"]
