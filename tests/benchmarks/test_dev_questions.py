import json

import pytest

from benchmarks.dev_questions import main
from benchmarks.questions import read_questions


def conv(cid, category, *user_turns):
    msgs = []
    for t in user_turns:
        msgs += [{"role": "user", "content": t}, {"role": "assistant", "content": "an answer"}]
    return {"id": cid, "category": category, "messages": msgs}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


FOLLOW_UP = "Rewrite your previous response so that every sentence starts with the letter A."


@pytest.fixture
def files(tmp_path):
    public = write(tmp_path / "eval-public.jsonl", [
        conv("p:1", "general", "How do tides work?", FOLLOW_UP),  # its stock follow-up was trained on
        conv("p:2", "general", "Name three uses of copper."),
        conv("p:3", "general", "  HOW DO rainbows   form? "),  # trained, up to case and whitespace
        conv("p:4", "general", "What is a prime number?"),
        conv("p:5", "general", "Why is the sky blue?"),
    ])
    mixed = write(tmp_path / "eval.jsonl", [
        conv("m:1", "math", "What is 2 + 2?"),
        conv("m:2", "chinese", "天空为什么是蓝色的？"),
        conv("m:3", "chinese", "请介绍一下长城。"),
    ])
    train = write(tmp_path / "train.jsonl", [
        conv("t:1", "general", "Tell me about volcanoes.", FOLLOW_UP),
        conv("t:2", "general", "how do rainbows form?"),
    ])
    return tmp_path, public, mixed, train


def test_skips_conversations_with_a_trained_turn_and_filters_by_category(files, capsys):
    tmp, public, mixed, train = files
    out = tmp / "dev.jsonl"
    assert main([str(out), "--set", f"public={public}", "--set", f"chinese={mixed}:chinese", "--per-set", "2",
                 "--not-in", str(train)]) == 0
    qs = read_questions(out)  # a valid Spec-Bench file
    assert [(q.question_id, q.category) for q in qs] == [("p:2", "public"), ("p:4", "public"),
                                                          ("m:2", "chinese"), ("m:3", "chinese")]
    assert qs[0].turns == ("Name three uses of copper.",)
    assert "{'public': 2, 'chinese': 0}" in capsys.readouterr().out
    # --per-set is a cap: a set with fewer usable conversations gives what it has
    assert main([str(out), "--set", f"public={public}", "--per-set", "9", "--not-in", str(train)]) == 0
    assert [q.question_id for q in read_questions(out)] == ["p:2", "p:4", "p:5"]
    # without --not-in nothing is skipped: the first conversations, all their user turns
    assert main([str(out), "--set", f"public={public}", "--per-set", "1"]) == 0
    assert read_questions(out)[0].turns == ("How do tides work?", FOLLOW_UP)


@pytest.mark.parametrize("args, message", [
    (["--set", "public"], "expected NAME=FILE"),
    (["--set", "public={public}", "--set", "public={mixed}"], "names must differ"),
    (["--set", "public={public}", "--per-set", "0"], "--per-set must be >= 1"),
    (["--set", "code={mixed}:code"], "has no usable conversation of category 'code'"),
    (["--set", "gone={tmp}/missing.jsonl"], "missing.jsonl not found"),
])
def test_bad_input_is_named_and_nothing_is_written(files, capsys, args, message):
    tmp, public, mixed, train = files
    out = write(tmp / "dev.jsonl", [{"kept": True}])
    args = [a.format(public=public, mixed=mixed, train=train, tmp=tmp) for a in args]
    assert main([str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert json.loads(out.read_text()) == {"kept": True}  # the earlier file is untouched


def test_a_record_without_user_turns_is_named(files, capsys):
    tmp, *_ = files
    bad = write(tmp / "eval-bad.jsonl", [{"id": "b:1", "category": "general", "messages": [{"role": "system", "content": "x"}]}])
    assert main([str(tmp / "dev.jsonl"), "--set", f"bad={bad}"]) == 2
    assert f"{bad}:1: no user turn" in capsys.readouterr().err
    assert not (tmp / "dev.jsonl").exists()
