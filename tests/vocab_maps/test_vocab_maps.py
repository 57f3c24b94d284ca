"""``python -m vocab_maps.build``: counting, selection, formats, sidecars and input errors (byte tokenizer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vocab_maps.format import load_vocab_map, read_sidecar, tokenizer_fingerprint
from tests.fixtures.tiny_checkpoint import build_byte_tokenizer
from vocab_maps.build import main, select_ids


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bytetok")
    build_byte_tokenizer(d, 384)
    return d


def _run(*argv):
    return main([str(a) for a in argv])


def _distill_jsonl(path):
    """``training.distill``-shaped records: the user writes only 'q', the assistant only 'abc' + Chinese."""
    rows = [
        {"id": f"r{i}", "messages": [
            {"role": "system", "content": "Z"},
            {"role": "user", "content": "qqqq"},
            {"role": "assistant", "content": "aaaa bbb cc 中"},
        ], "complete": True}
        for i in range(5)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_counts_only_assistant_turns(tmp_path, tokdir):
    src = _distill_jsonl(tmp_path / "distill.jsonl")
    out = tmp_path / "m.pt"
    assert _run("--tokenizer", tokdir, "--input", src, "--language", "en", "--size", "64", "--out", out) == 0
    ids = torch.load(out, weights_only=True)
    assert isinstance(ids, list)  # the FR-Spec/SGLang format: a plain list of ints
    # Descending frequency: 'a' (20) > 'b' (15) > ' ' (15, lower id wins ties: 32 < 98) ...
    assert ids[:3] == [ord(" "), ord("a"), ord("b")] or ids[:2] == [ord("a"), ord(" ")]
    assert ord("q") not in ids and ord("Z") not in ids  # user/system text is not what the draft produces
    assert {0xE4, 0xB8, 0xAD} <= set(ids)  # UTF-8 bytes of 中
    assert 258 in ids and 256 in ids  # <|im_end|> (eos) and <|endoftext|> forced in by default
    meta = read_sidecar(out)
    assert meta["format"] == "fr-spec-list" and meta["num_ids"] == len(ids)
    assert meta["sources"][0]["documents"] == 5
    assert meta["sources"][0]["tokens"] == 5 * len("aaaa bbb cc 中".encode())
    assert meta["counts"]["coverage"] == 1.0
    assert "--input" in meta["command"]


def test_sizes_weights_and_roundtrip(tmp_path, tokdir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokdir))
    en = tmp_path / "en.txt"
    en.write_text("the quick brown fox jumps over the lazy dog\n" * 50)
    zh = tmp_path / "zh.txt"
    zh.write_text("我们今天去公园散步。\n" * 50, encoding="utf-8")
    out = tmp_path / "m-{size}.pt"
    rc = _run("--tokenizer", tokdir, "--input", en, "--input", zh, "--weight", "0.9", "--weight", "0.1",
              "--language", "en", "--size", "8,16", "--always-include", "<|im_end|>", "--out", out)
    assert rc == 0
    small = load_vocab_map(tmp_path / "m-8.pt", vocab_size=384, fingerprint=tokenizer_fingerprint(tok))
    big = load_vocab_map(tmp_path / "m-16.pt", vocab_size=384)
    assert small.numel() == 8 and big.numel() == 16
    assert 258 in small.tolist()
    assert big.tolist()[:7] == [i for i in big.tolist() if i != 258][:7]  # same ranking, one pass
    # With English weighted 0.9 the top ids are English bytes, not the UTF-8 bytes of the Chinese text.
    assert all(i < 0x80 for i in small.tolist() if i != 258)
    meta = read_sidecar(tmp_path / "m-8.pt")
    assert meta["tokenizer"]["fingerprint"] == tokenizer_fingerprint(tok)
    assert [s["weight"] for s in meta["sources"]] == [0.9, 0.1]


def test_d2t_export_and_conversion(tmp_path, tokdir):
    src = tmp_path / "t.txt"
    src.write_text("hello world, hello draft\n" * 10)
    d2t = tmp_path / "m.safetensors"
    assert _run("--tokenizer", tokdir, "--input", src, "--language", "en", "--size", "12", "--out", d2t) == 0
    from safetensors.torch import load_file

    t = load_file(str(d2t))
    ids = load_vocab_map(d2t, vocab_size=384)
    assert ids.tolist() == sorted(ids.tolist())  # d2t holds ascending draft ids
    assert (torch.arange(ids.numel()) + t["d2t"]).tolist() == ids.tolist()
    assert t["t2d"].sum() == ids.numel() and bool(t["t2d"][ids].all())
    back = tmp_path / "conv.pt"
    assert _run("--tokenizer", tokdir, "--from-map", d2t, "--language", "en", "--size", "12", "--out", back) == 0
    assert torch.load(back, weights_only=True) == ids.tolist()
    assert read_sidecar(back)["converted_from"] == str(d2t)


def test_word_frequency_input(tmp_path, tokdir):
    tsv = tmp_path / "words.tsv"
    tsv.write_text(" x\t100\n y\t1\n")
    out = tmp_path / "w.pt"
    assert _run("--tokenizer", tokdir, "--input", tsv, "--language", "en", "--size", "3", "--out", out,
                "--always-include", "258") == 0
    assert torch.load(out, weights_only=True) == [ord(" "), ord("x"), 258]


def test_select_ids_forces_always_in_at_the_tail():
    counts = np.array([0, 5, 9, 1, 7, 0], dtype=float)
    assert select_ids(counts, 3, []) == [2, 4, 1]
    assert select_ids(counts, 3, [3]) == [2, 4, 3]  # 3 replaces the least frequent kept id
    assert select_ids(counts, 3, [5]) == [2, 4, 5]  # never seen: appended last
    assert select_ids(counts, 10, []) == [2, 4, 1, 3]  # fewer distinct ids than asked


def test_errors_before_work_and_no_clobber(tmp_path, tokdir, capsys):
    out = tmp_path / "keep.pt"
    torch.save([1, 2, 3], out)
    good = tmp_path / "g.txt"
    good.write_text("abc\n")
    assert _run("--tokenizer", tokdir, "--input", good, "--language", "en", "--size", "4", "--out", out) == 2
    assert "keep.pt exists; pass --force" in capsys.readouterr().err
    assert torch.load(out, weights_only=True) == [1, 2, 3]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "assistant", "content": "hi"}]}\nnot json\n')
    new = tmp_path / "new.pt"
    assert _run("--tokenizer", tokdir, "--input", bad, "--language", "en", "--size", "4", "--out", new) == 2
    assert "bad.jsonl:2: malformed JSON" in capsys.readouterr().err
    assert not new.exists() and not new.with_suffix(".json").exists()

    cases = [
        (["--input", tmp_path / "missing.txt"], "missing.txt: no such file"),
        (["--input", good, "--size", "500"], "--size 500 exceeds the vocabulary (259 ids)"),
        (["--input", good, "--size", "8,16"], "need '{size}' in --out"),
        (["--input", good, "--weight", "1", "--weight", "2"], "2 --weight values for 1 --input"),
        (["--input", good, "--size", "lots"], "size 'lots': expected an integer or NNk"),
        (["--input", good, "--always-include", "<|nope|>"], "'<|nope|>': neither an id nor a token"),
        (["--input", _distill_jsonl(tmp_path / "d.jsonl"), "--roles", "tool"], "no tokens counted"),
    ]
    for extra, msg in cases:
        argv = ["--tokenizer", tokdir, "--language", "en", "--size", "4", "--out", tmp_path / "x.pt"]
        # later --size wins in argparse, so per-case sizes override the default above
        assert _run(*argv, *extra) == 2, extra
        assert msg in capsys.readouterr().err, msg
    assert not (tmp_path / "x.pt").exists()


def test_recipe_strips_peoples_daily_tags():
    from vocab_maps.recipe import strip_pos_tags

    line = "１２月/t  ３１日/t  ，/w  [中央/n  人民/n  广播/vn  电台/n]nt  发表/v  ２０００/m  Ｗｏｒｄ/x\n"
    assert strip_pos_tags(line) == "12月31日，中央人民广播电台发表2000Word"
