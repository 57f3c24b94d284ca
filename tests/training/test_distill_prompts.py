"""Input formats → the conversation skeleton the model is conditioned on, and the errors bad files give."""

import gzip
import json

import pytest

from training.prompts import PromptFormatError, load_inputs, parse_input_spec, read_prompts


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def load_one(path, **kw):
    _, convs = load_inputs([str(path)], **kw)
    return convs


def test_specbench_turns_multi_turn(tmp_path):
    f = write_jsonl(tmp_path / "question.jsonl", [{"question_id": 81, "category": "writing", "turns": ["Q1", "Q2"]}])
    (c,) = load_one(f)
    assert c.user_turns == ["Q1", "Q2"] and c.system is None
    assert c.category == "writing" and c.meta == {"question_id": 81}
    # Generated answers are interleaved after the user turn they answer; later turns see earlier answers.
    assert c.messages(["A1"]) == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert c.messages(["A1", "A2"])[-1] == {"role": "assistant", "content": "A2"}


def test_openai_messages_drop_reference_answers_keep_system(tmp_path):
    f = write_jsonl(
        tmp_path / "oa.jsonl",
        [{"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "2+"}, {"type": "text", "text": "2?"}]},
            {"role": "assistant", "content": "REFERENCE"},
            {"role": "user", "content": "times 3?"},
            {"role": "assistant", "content": "REFERENCE2"},
        ]}],
    )
    (c,) = load_one(f)
    assert c.system == "Be brief." and c.user_turns == ["2+2?", "times 3?"]
    msgs = c.messages(["4", "12"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert "REFERENCE" not in json.dumps(msgs)


def test_sharegpt_conversations(tmp_path):
    f = write_jsonl(
        tmp_path / "sg.jsonl",
        [{"conversations": [
            {"from": "system", "value": "你是助手"},
            {"from": "human", "value": "写一首诗"},
            {"from": "gpt", "value": "ref"},
            {"from": "human", "value": "再来一首"},
        ]}],
    )
    (c,) = load_one(f)
    assert c.system == "你是助手" and c.user_turns == ["写一首诗", "再来一首"]
    assert c.messages(["诗一"])[2] == {"role": "assistant", "content": "诗一"}


def test_plain_prompt_and_json_array_and_gzip(tmp_path):
    arr = tmp_path / "plain.json"
    arr.write_text(json.dumps([{"prompt": "def f(x):", "system": "You write code."}, {"prompt": "hi"}]))
    convs = load_one(arr)
    assert [c.user_turns for c in convs] == [["def f(x):"], ["hi"]]
    assert convs[0].system == "You write code." and convs[1].system is None
    gz = tmp_path / "p.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(json.dumps({"prompt": "zipped"}) + "\n")
    assert load_one(gz)[0].user_turns == ["zipped"]


def test_category_tag_overrides_field_and_default_applies(tmp_path):
    f = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "category": "writing"}, {"prompt": "b"}])
    assert [c.category for c in load_one(f)] == ["writing", "general"]
    assert [c.category for c in load_one(f, default_category="misc")] == ["writing", "misc"]
    _, convs = load_inputs([f"{f}:math"])
    assert [c.category for c in convs] == ["math", "math"]
    spec = parse_input_spec(f"{f}:code")
    assert spec.category == "code" and spec.source == "mixed.jsonl"


def test_ids_are_stable_and_distinct(tmp_path):
    rows = [{"prompt": "same"}, {"prompt": "same"}, {"prompt": "other"}]
    a = load_one(write_jsonl(tmp_path / "a.jsonl", rows))
    b = load_one(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [c.id for c in a] == [c.id for c in b]  # a re-read gives the same ids (resume depends on it)
    assert len({c.id for c in a}) == 3  # exact duplicates on different lines are still different items
    assert a[0].id.startswith("a.jsonl:1:")


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"turns": ["ok"]', "bad.jsonl:2: malformed JSON"),
        ('{"question": "no known field"}', "bad.jsonl:2: unknown format"),
        ('{"prompt": "   "}', "bad.jsonl:2: empty prompt"),
        ('{"turns": []}', "bad.jsonl:2: empty prompt"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "bad.jsonl:2: messages[0] is an assistant message"),
        ('{"messages": [{"role": "tool", "content": "x"}]}', "bad.jsonl:2: messages[0] has unsupported role 'tool'"),
        ('{"conversations": [{"from": "human", "value": 3}]}', "bad.jsonl:2: conversations[0] must be a string"),
        ('{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "non-text content part"),
        ('["not", "an", "object"]', "bad.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, expected):
    f = write_jsonl(tmp_path / "bad.jsonl", ['{"prompt": "fine"}', line])
    with pytest.raises(PromptFormatError) as e:
        load_one(f)
    assert expected in str(e.value)


def test_forced_format_and_input_errors(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}])
    with pytest.raises(PromptFormatError, match="p.jsonl:1: format 'turns' needs a 'turns' field"):
        load_one(f, fmt="turns")
    with pytest.raises(PromptFormatError, match="prompt file not found"):
        load_inputs([str(tmp_path / "missing.jsonl")])
    sub = tmp_path / "sub"
    sub.mkdir()
    g = write_jsonl(sub / "p.jsonl", [{"prompt": "y"}])
    with pytest.raises(PromptFormatError, match="same file name"):
        load_inputs([str(f), str(g)])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(PromptFormatError, match="no prompts"):
        read_prompts(parse_input_spec(str(empty)))
