"""benchmarks.map_coverage: each conversation is counted against the map of its prompt's language, every
assistant token once, and bad map specs are refused by name."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from benchmarks.map_coverage import main, parse_maps


def test_coverage_counts_assistant_tokens_against_the_prompt_languages_map(tiny_random_mimo, tmp_path):
    tok = AutoTokenizer.from_pretrained(str(tiny_random_mimo))
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    en_answer, zh_answer = "hello world", "你好世界"
    rows = [
        {"source": "a.jsonl", "category": "general", "messages": [
            {"role": "user", "content": "Say hello."}, {"role": "assistant", "content": en_answer},
            {"role": "user", "content": "Again."}, {"role": "assistant", "content": en_answer}]},
        {"source": "a.jsonl", "category": "chinese", "messages": [
            {"role": "user", "content": "请打招呼。"}, {"role": "assistant", "content": zh_answer}]},
    ]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    en_ids, zh_ids = sorted(set(ids(en_answer))), sorted(set(ids(zh_answer)))
    half = en_ids[: len(en_ids) // 2]
    for name, lst in (("en", en_ids), ("zh", zh_ids), ("half", half)):
        torch.save(lst, tmp_path / f"{name}.pt")
    out = tmp_path / "out"
    assert main(["--tokenizer", str(tiny_random_mimo), "--data", str(data), "--out", str(out),
                 "--maps", f"right={tmp_path / 'en.pt'},{tmp_path / 'zh.pt'}",
                 "--maps", f"swapped={tmp_path / 'zh.pt'},{tmp_path / 'en.pt'}",
                 "--maps", f"half={tmp_path / 'half.pt'},{tmp_path / 'zh.pt'}"]) == 0
    res = json.loads((out / "results.json").read_text())
    n_en, n_zh = 2 * len(ids(en_answer)), len(ids(zh_answer))
    assert res["tokens"] == {"a/general": n_en, "a/chinese": n_zh}
    assert res["covered"]["right"] == {"a/general": n_en, "a/chinese": n_zh}
    assert res["covered"]["swapped"].get("a/general", 0) < n_en and res["covered"]["swapped"].get("a/chinese", 0) < n_zh
    assert res["covered"]["half"]["a/general"] == 2 * sum(i in half for i in ids(en_answer))
    assert "| **all** |" in (out / "results.md").read_text()


def test_bad_map_specs_are_refused_by_name(tmp_path):
    with pytest.raises(SystemExit, match="expected NAME=EN_MAP,ZH_MAP"):
        parse_maps(["only.pt"])
    with pytest.raises(SystemExit, match="no such map file: .*missing.pt"):
        parse_maps([f"x={tmp_path / 'missing.pt'},{tmp_path / 'missing.pt'}"])
