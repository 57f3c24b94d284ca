"""Curation: filters, MinHash near-duplicate removal across sources, token-share mixing, CLI errors."""

import json
import random

import pytest

from training.curate import (
    CurateError,
    Item,
    main,
    minhash_dedup,
    mix_by_tokens,
    parse_mix,
    repetition_ratio,
)

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu river stone cloud maple ember harbor lantern "
    "meadow orbit prism quartz saddle timber velvet willow"
).split()


def rec(rid, category="general", prompt="p", answer="a", tokens=10, finish="stop", source="src.jsonl"):
    return {
        "id": rid, "source": source, "category": category,
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        "finish_reason": finish, "finish_reasons": [finish], "prompt_tokens": [5], "completion_tokens": [tokens],
        "total_tokens": tokens + 5,
    }


def item(r):
    return Item(r, "x:1", "x", r["total_tokens"])


def sentence(rng, n=40):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def test_repetition_ratio_separates_loops_from_prose():
    rng = random.Random(0)
    assert repetition_ratio(sentence(rng, 80)) < 0.2
    assert repetition_ratio("那么答案是四。" * 60) > 0.9
    assert repetition_ratio("short") == 0.0


def test_minhash_removes_planted_near_duplicates_within_and_across_sources():
    rng = random.Random(1)
    originals = [sentence(rng) for _ in range(40)]
    items = [item(rec(f"a.jsonl:{i}:h", prompt=t, source="a.jsonl")) for i, t in enumerate(originals)]
    planted = []
    for i in range(0, 40, 4):  # near-copies: one word changed, different case and spacing
        words = originals[i].split()
        words[7] = "zeppelin"
        text = "  ".join(words).upper()
        src = "a.jsonl" if i % 8 == 0 else "b.jsonl"
        planted.append(item(rec(f"{src}:{100 + i}:h", prompt=text, source=src)))
    # Two samples of one conversation share their prompt on purpose: not duplicates.
    samples = [item(rec(f"c.jsonl:1:h#s{k}", prompt="same prompt for both samples " * 3, source="c.jsonl")) for k in range(2)]
    kept, rep = minhash_dedup(items + planted + samples, threshold=0.8)
    kept_ids = {it.rec["id"] for it in kept}
    assert all(it.rec["id"] in kept_ids for it in items + samples)  # every distinct item survives
    assert not any(it.rec["id"] in kept_ids for it in planted)  # every planted copy is gone
    assert rep.dropped == len(planted) == 10
    assert rep.details["within_source"] == 5 and rep.details["cross_source"] == 5


def test_mix_hits_paper_shares_within_one_percent():
    rng = random.Random(2)
    items = []
    sizes = {"general": 900, "math": 300, "code": 500, "chinese": 700, "other": 50}
    for cat, count in sizes.items():
        for i in range(count):
            items.append(item(rec(f"{cat}:{i}", category=cat, tokens=rng.randint(20, 400))))
    kept, rep = mix_by_tokens(items, parse_mix("paper"), seed=0)
    per = rep.details["per_category"]
    for cat, share in parse_mix("paper").items():
        assert abs(per[cat]["achieved_share"] - share) <= 0.01, (cat, per[cat])
    limit = rep.details["limited_by"]
    assert per[limit]["selected_tokens"] == per[limit]["available_tokens"]  # the scarcest category is used whole
    assert "other" not in {it.category for it in kept} and rep.details["unmixed_categories_dropped"] == ["other"]
    # A smaller budget keeps the shares.
    kept2, rep2 = mix_by_tokens(items, parse_mix("general=0.5,math=0.5"), total_tokens=20000)
    assert abs(rep2.details["total_tokens"] - 20000) < 800
    assert rep2.details["max_share_error"] <= 0.01


def test_parse_mix_errors():
    assert parse_mix("a=0.25,b=0.75") == {"a": 0.25, "b": 0.75}
    with pytest.raises(CurateError, match="sum to 0.5"):
        parse_mix("general=0.25,math=0.25")
    with pytest.raises(CurateError, match="not CATEGORY=SHARE"):
        parse_mix("general")
    with pytest.raises(CurateError, match="must be > 0"):
        parse_mix("general=1,math=0")
    with pytest.raises(CurateError, match="no data left after filtering: code"):
        mix_by_tokens([item(rec("1"))], {"general": 0.5, "code": 0.5})


def test_cli_filters_dedups_mixes_and_reports(tmp_path):
    rng = random.Random(3)
    records = []
    for cat in ("general", "math"):
        for i in range(60):
            records.append(rec(f"{cat}.jsonl:{i}:h", cat, prompt=sentence(rng), answer=sentence(rng, 30), tokens=rng.randint(20, 60), source=f"{cat}.jsonl"))
    records.append(rec("t:1", "general", prompt=sentence(rng), answer="cut off", finish="length"))
    records.append(rec("r:1", "general", prompt=sentence(rng), answer="loop " * 100))
    records.append(rec("s:1", "general", prompt=sentence(rng), answer="", tokens=0))
    records.append(rec("l:1", "math", prompt=sentence(rng), answer="long", tokens=5000))
    records.append(rec("d:1", "math", prompt=records[0]["messages"][0]["content"] + "!", source="dup.jsonl"))
    inp = write(tmp_path / "data.jsonl", records)
    out = tmp_path / "curated.jsonl"
    rc = main(["--in", str(inp), "--out", str(out), "--max-tokens", "4096", "--mix", "general=0.6,math=0.4"])
    assert rc == 0
    report = json.loads((tmp_path / "curated.jsonl.report.json").read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["read"]["kept"] == 125
    assert steps["truncated"]["dropped"] == 1
    assert steps["repetition"]["dropped"] == 1
    assert steps["length"]["details"]["reasons"] == {"too_short": 1, "too_long": 1}
    assert steps["dedup"]["dropped"] == 1 and steps["dedup"]["details"]["cross_source"] == 1
    assert steps["mix"]["details"]["max_share_error"] <= 0.02
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    ids = {r["id"] for r in kept}
    assert not ids & {"t:1", "r:1", "s:1", "l:1", "d:1"}
    assert len(kept) == steps["mix"]["kept"]

    # --keep-truncated keeps the cut-off answer.
    out2 = tmp_path / "keep.jsonl"
    assert main(["--in", str(inp), "--out", str(out2), "--keep-truncated", "--no-dedup"]) == 0
    assert "t:1" in {json.loads(x)["id"] for x in out2.read_text().splitlines()}


def test_cli_bad_input_is_refused_before_writing(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", [rec("1")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec("1")) + "\n" + '{"id": "2", "category": "general"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["--in", str(bad), "--out", str(out)]) == 2
    assert "bad.jsonl:2: missing field 'messages'" in capsys.readouterr().err
    bad.write_text('{"id": \n')
    assert main(["--in", str(bad), "--out", str(out)]) == 2
    assert "bad.jsonl:1: malformed JSON" in capsys.readouterr().err
    assert not out.exists()

    out.write_text("precious\n")
    assert main(["--in", str(good), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "precious\n"
    assert main(["--in", str(good), "--out", str(good), "--overwrite"]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert main(["--in", str(good), "--out", str(out), "--overwrite", "--mix", "general=0.5,code=0.5"]) == 2
    assert "no data left after filtering: code" in capsys.readouterr().err
    assert out.read_text() == "precious\n"
