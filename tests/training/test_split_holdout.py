"""training.split_holdout: a held-out set decided by ids alone (stable as the corpus grows), named errors."""

import json

import pytest

from training.split_holdout import SplitError, held_out, main, split


def _write(path, ids, cat="general"):
    path.write_text("".join(json.dumps({"id": i, "category": cat, "messages": []}) + "\n" for i in ids))
    return path


def test_holdout_is_stable_as_the_corpus_grows(tmp_path):
    small = _write(tmp_path / "a.jsonl", [f"q{i}" for i in range(300)])
    big = _write(tmp_path / "b.jsonl", [f"q{i}" for i in range(900)])
    split(small, tmp_path / "st.jsonl", tmp_path / "se.jsonl", every=10)
    split(big, tmp_path / "bt.jsonl", tmp_path / "be.jsonl", every=10)
    ids = lambda p: [json.loads(x)["id"] for x in p.read_text().splitlines()]  # noqa: E731
    small_eval, big_eval = ids(tmp_path / "se.jsonl"), ids(tmp_path / "be.jsonl")
    assert set(small_eval) <= set(big_eval) and 10 <= len(small_eval) <= 50
    assert set(small_eval).isdisjoint(ids(tmp_path / "st.jsonl"))
    assert len(small_eval) + len(ids(tmp_path / "st.jsonl")) == 300
    assert all(held_out(i, 10) for i in big_eval)


def test_by_category_and_named_errors(tmp_path, capsys):
    src = tmp_path / "m.jsonl"
    src.write_text(_write(tmp_path / "x", ["a", "b"]).read_text() + _write(tmp_path / "y", ["c"], "chinese").read_text())
    assert split(src, tmp_path / "en.jsonl", tmp_path / "zh.jsonl", category="chinese") == (2, 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(SplitError, match=r"bad.jsonl:2: not a JSON object with an 'id' field"):
        split(bad, tmp_path / "t", tmp_path / "e", every=5)
    assert not (tmp_path / "t").exists()  # nothing written before the input is known good
    assert main([str(bad), "--train", str(tmp_path / "t"), "--eval", str(tmp_path / "e"), "--every", "1"]) == 2
    assert "--every must be >= 2" in capsys.readouterr().err
