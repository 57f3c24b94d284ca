"""training.chunk_sets: the per-set, per-chunk files the state caches are built from stay the same as sets grow."""

import json
import os

import pytest

from training.chunk_sets import ChunkError, chunk_parts, main, write_parts


def _rec(prompt_file, line, cat="general"):
    return json.dumps({"id": f"{prompt_file}:{line}:abc", "category": cat,
                       "messages": [{"role": "user", "content": f"q{line}"},
                                    {"role": "assistant", "content": f"a{line}"}]}) + "\n"


def _write(path, lines):
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_chunks_by_set_and_prompt_line(tmp_path):
    train = _write(tmp_path / "train.jsonl", [_rec("mixed.jsonl", 1), _rec("self.jsonl", 4), _rec("mixed.jsonl", 3),
                                              _rec("mixed.jsonl", 4), _rec("self.jsonl", 2)])
    held = _write(tmp_path / "eval.jsonl", [_rec("mixed.jsonl", 2), _rec("self.jsonl", 1), _rec("public.jsonl", 9)])
    parts = chunk_parts(train, held, lines=3)
    assert parts["train-chunk0"] == [_rec("mixed.jsonl", 1), _rec("mixed.jsonl", 3)]  # lines 1..3
    assert parts["train-chunk1"] == [_rec("mixed.jsonl", 4)]
    assert parts["train-self-chunk0"] == [_rec("self.jsonl", 2)]
    assert parts["train-self-chunk1"] == [_rec("self.jsonl", 4)]
    assert parts["eval-first105"] == held.read_text().splitlines(keepends=True)  # all three: fewer than 105
    assert parts["eval-self"] == [_rec("self.jsonl", 1)]
    assert parts["eval-public"] == [_rec("public.jsonl", 9)]
    assert "eval-mixed" not in parts


def test_a_new_set_leaves_earlier_files_untouched(tmp_path):
    out = tmp_path / "out"
    held = _write(tmp_path / "eval.jsonl", [_rec("mixed.jsonl", 2)])
    train = _write(tmp_path / "train.jsonl", [_rec("mixed.jsonl", 1), _rec("self.jsonl", 1)])
    write_parts(chunk_parts(train, held), out)
    first = out / "train-chunk0.jsonl"
    os.utime(first, (1, 1))
    _write(train, [_rec("mixed.jsonl", 1), _rec("self.jsonl", 1), _rec("self2.jsonl", 1)])
    done = {p.name: written for p, _, written in write_parts(chunk_parts(train, held), out)}
    assert done == {"train-chunk0.jsonl": False, "train-self-chunk0.jsonl": False, "train-self2-chunk0.jsonl": True,
                    "eval-first105.jsonl": False}
    assert first.stat().st_mtime == 1  # not rewritten
    assert (out / "train-self2-chunk0.jsonl").read_text() == _rec("self2.jsonl", 1)


def test_bad_id_is_named_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    held = _write(tmp_path / "eval.jsonl", [_rec("mixed.jsonl", 2), json.dumps({"id": "no-line-here"}) + "\n"])
    train = _write(tmp_path / "train.jsonl", [_rec("mixed.jsonl", 1)])
    assert main([str(train), str(held), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{held}:2" in err and "PROMPT_FILE:LINE:HASH" in err
    assert not out.exists()
    with pytest.raises(ChunkError, match="line 0"):
        chunk_parts(_write(tmp_path / "t2.jsonl", [_rec("mixed.jsonl", 0)]), held)
    with pytest.raises(ChunkError, match="not found"):
        chunk_parts(tmp_path / "missing.jsonl", held)
