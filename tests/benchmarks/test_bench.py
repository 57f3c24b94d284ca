"""Benchmark harness: question files, overlap check, method specs, the report arithmetic, input refusals, and
(slow) a real side-by-side run of none + mtp on a tiny model whose MTP head is known to draft correctly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.methods import MethodSpecError, expand, parse_method
from benchmarks.questions import (
    BenchmarkOverlapError,
    QuestionFormatError,
    bundled_paths,
    check_no_overlap,
    find_overlap,
    load_question_sets,
    read_questions,
)
from benchmarks.run import main as run_main

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines))
    return path


# ------------------------------------------------------------------------------------------ questions


def test_bundled_question_sets_are_valid():
    sizes = {p.name: len(read_questions(p)) for p in bundled_paths()}
    assert sizes == {"mt_bench.jsonl": 80, "humaneval.jsonl": 164, "math.jsonl": 20, "chinese.jsonl": 20}
    groups = load_question_sets(bundled_paths(), per_category=2)
    assert {"writing", "coding", "code", "math_word", "chinese"} <= set(groups)
    assert all(len(q) == 2 for q in groups.values())
    by_file = load_question_sets(bundled_paths(), group_by="file")
    assert list(by_file) == ["mt_bench", "humaneval", "math", "chinese"]
    assert sum(len(q.turns) == 2 for q in by_file["mt_bench"]) == 80


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"q\.jsonl:2: malformed JSON"),
        ({"question_id": 9, "category": "x"}, r"q\.jsonl:2: field 'turns' is missing"),
        ({"question_id": 9, "category": "x", "turns": []}, r"q\.jsonl:2: field 'turns' must be a non-empty list"),
        ({"question_id": 1, "category": "x", "turns": ["again"]}, r"q\.jsonl:2: question_id '1' appears twice"),
    ],
)
def test_question_file_errors_name_file_and_line(tmp_path, line, message):
    f = _write(tmp_path / "q.jsonl", [{"question_id": 1, "category": "x", "turns": ["hi"]}, line])
    with pytest.raises(QuestionFormatError, match=message):
        read_questions(f)


def test_overlap_check_finds_exact_and_embedded_prompts(tmp_path):
    q = _write(tmp_path / "q.jsonl", [
        {"question_id": 1, "category": "x", "turns": ["Explain   how a Bloom filter works, with an example."]},
        {"question_id": 2, "category": "x", "turns": ["Hi"]},
    ])
    clean = _write(tmp_path / "clean.jsonl", [{"messages": [{"role": "user", "content": "Hi there, tell me a joke"}]}])
    check_no_overlap([clean], [q])  # "Hi" is too short to count as embedded
    exact = _write(tmp_path / "exact.jsonl", [{"prompt": "hi"}])
    embedded = _write(tmp_path / "emb.jsonl", [
        {"conversations": [{"from": "human", "value": "Please: explain how a bloom filter works, with an example. Thanks"}]}
    ])
    hits = find_overlap([exact, embedded], [q])
    assert {(h[0].split(":")[-1], Path(h[1]).name) for h in hits} == {("2 turn 1", "exact.jsonl"), ("1 turn 1", "emb.jsonl")}
    with pytest.raises(BenchmarkOverlapError, match="2 benchmark prompt"):
        check_no_overlap([exact, embedded], [q])


def test_overlap_cli_exit_codes(tmp_path):
    train = _write(tmp_path / "t.jsonl", [{"prompt": read_questions(bundled_paths()[2])[0].turns[0]}])
    from benchmarks.questions import main

    assert main([str(train)]) == 1
    assert main([str(_write(tmp_path / "ok.jsonl", [{"prompt": "nothing in common"}]))]) == 0


# ------------------------------------------------------------------------------------------ methods


def test_methods_are_data_and_expand_over_k():
    ms = [parse_method("mtp"), parse_method("none"),
          parse_method('fast32k={"model": "/m", "speculative_config": {"method": "fastmtp", "draft_vocab": "en32k"}}'),
          parse_method('fixed={"speculative_config": {"method": "mtp", "num_speculative_tokens": 5}}')]
    jobs = expand(ms, [1, 3])
    assert [j.key for j in jobs] == ["none", "mtp@K=1", "mtp@K=3", "fast32k@K=1", "fast32k@K=3", "fixed@K=5"]
    assert jobs[4].speculative_config() == {"method": "fastmtp", "draft_vocab": "en32k", "num_speculative_tokens": 3}
    assert jobs[0].speculative_config() is None and jobs[3].method.model == "/m"


@pytest.mark.parametrize(
    "arg, message",
    [
        ("eagle", "unknown built-in"),
        ("x={bad", "not valid JSON"),
        ('x={"speculative_config": {"num_speculative_tokens": 2}}', "with a 'method'"),
        ('x={"spec": null}', r"unknown field\(s\) \['spec'\]"),
        ('x={"speculative_config": {"method": "mtp", "num_speculative_tokens": 0}}', "num_speculative_tokens is 0"),
    ],
)
def test_bad_method_specs_are_refused(arg, message):
    with pytest.raises(MethodSpecError, match=message):
        parse_method(arg)


# ------------------------------------------------------------------------------------------ report arithmetic


def _part(tokens, wall, drafts=0, accepted_per_pos=(), outputs=None):
    return {"output_tokens": tokens, "wall_s": wall, "drafts": drafts, "accepted": sum(accepted_per_pos),
            "draft_tokens": drafts * len(accepted_per_pos), "accepted_per_pos": list(accepted_per_pos),
            "outputs": outputs or {"q": [[1, 2, 3]]}}


def test_report_tau_acceptance_and_side_by_side_speedups():
    jobs = [
        {"key": "none", "method": "none", "k": None,
         "result": {"categories": {"a": _part(100, 10.0), "b": _part(100, 5.0)}}},
        {"key": "mtp@K=2", "method": "mtp", "k": 2,
         "result": {"categories": {"a": _part(100, 5.0, 40, (30, 10)), "b": _part(100, 5.0, 60, (30, 0))}}},
        {"key": "fastmtp@K=2", "method": "fastmtp", "k": 2,
         "result": {"categories": {"a": _part(100, 4.0, 50, (40, 30)), "b": _part(100, 2.5, 50, (45, 40),
                                                                          outputs={"q": [[1, 2, 4]]})}}},
    ]
    rows = {r["key"]: r for r in report.table_rows(jobs, ["a", "b"])}
    mtp, fast = rows["mtp@K=2"], rows["fastmtp@K=2"]
    assert mtp["stats"]["a"].tau == pytest.approx(1 + 40 / 40)
    # pooled, not averaged: (30+10+30+0) / (40+60) accepted per draft
    assert mtp["stats"]["overall"].tau == pytest.approx(1.7)
    assert mtp["stats"]["overall"].per_position_acceptance == pytest.approx([0.6, 0.1])
    assert rows["none"]["stats"]["overall"].tok_per_s == pytest.approx(200 / 15)
    assert mtp["speedup_vs_none"]["a"] == pytest.approx(2.0) and mtp["speedup_vs_none"]["b"] == pytest.approx(1.0)
    assert fast["speedup_vs_mtp"]["overall"] == pytest.approx((200 / 6.5) / (200 / 10))
    assert rows["none"]["speedup_vs_mtp"]["a"] is None  # no mtp at K=None
    mism = report.lossless_mismatches(jobs)
    assert mism == [{"job": "fastmtp@K=2", "category": "b", "question_id": "q", "turn": 1, "first_diff_token": 2,
                     "len": 3, "reference_len": 3}]
    md = report.markdown(list(rows.values()), ["a", "b"], {"model": "m", "questions_per_category": {"a": 1, "b": 1}})
    assert "| fastmtp | 2 | 2.50× | 2.00× |" in md and "| mtp | 2 | 60.0% | 10.0% |" in md
    s = report.summary(list(rows.values()), 2)
    assert set(s) == {"none", "mtp", "fastmtp"}
    assert "per_turn" not in s["fastmtp"]["per_category"]["a"] and "Per turn" not in md  # one-turn results
    # a two-turn category: its per-turn counters give per-turn tau, in the summary and the table
    jobs[2]["result"]["categories"]["a"]["per_turn"] = [_part(60, 2.0, 30, (30, 25)), _part(40, 2.0, 20, (10, 5))]
    rows = {r["key"]: r for r in report.table_rows(jobs, ["a", "b"])}
    turns = report.summary(list(rows.values()), 2)["fastmtp"]["per_category"]["a"]["per_turn"]
    assert [t["tau"] for t in turns] == pytest.approx([1 + 55 / 30, 1 + 15 / 20])
    assert turns[1]["per_position_acceptance"] == pytest.approx([0.5, 0.25]) and turns[0]["output_tokens"] == 60
    md = report.markdown(list(rows.values()), ["a", "b"], {"model": "m"})
    assert "| a turn 1 τ | a turn 2 τ |" in md and "| fastmtp | 2 | 2.83 | 1.75 |" in md and "| mtp | 2 | – | – |" in md
    assert set(s["fastmtp"]) >= {"tok_per_s", "tau", "per_position_acceptance", "speedup_vs_none", "speedup_vs_mtp"}


# ------------------------------------------------------------------------------------------ refusals


def test_bad_inputs_exit_2_before_any_engine(tmp_path, tiny_random_mimo, capsys):
    q = _write(tmp_path / "q.jsonl", [{"question_id": 1, "category": "x", "turns": ["hi"]}])
    base = ["--model", str(tiny_random_mimo), "--questions", str(q), "--out-dir", str(tmp_path / "out")]
    assert run_main(base[:1] + [str(tmp_path / "nope")] + base[2:]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_main(base + ["--method", "mtp"]) == 2
    assert "must include 'none'" in capsys.readouterr().err
    assert run_main(base + ["--k", "0"]) == 2
    bad_q = _write(tmp_path / "bad.jsonl", ['{"question_id": 1}'])
    assert run_main(base[:2] + ["--questions", str(bad_q)] + base[4:]) == 2
    assert "bad.jsonl:1: field 'category' is missing" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "table.md").write_text("earlier results")
    assert run_main(base) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "table.md").read_text() == "earlier results"
    leak = _write(tmp_path / "train.jsonl", [{"prompt": "hi"}])
    assert run_main(base + ["--overwrite", "--training-prompts", str(leak)]) == 2
    assert "appear in training data" in capsys.readouterr().err
    assert not (tmp_path / "out" / "engines").exists()


# ------------------------------------------------------------------------------------------ real engines


@pytest.mark.slow
def test_side_by_side_run_none_and_mtp(tmp_path, tiny_counting_mimo):
    """The counting model's head drafts t+2 from the hidden path: vanilla mtp must accept most drafts, and every
    output must equal the no-speculation output."""
    q = _write(tmp_path / "q.jsonl", [
        {"question_id": 1, "category": "first", "turns": ["abc", "def"]},
        {"question_id": 2, "category": "second", "turns": ["klm"]},
    ])
    out = tmp_path / "res"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--model", str(tiny_counting_mimo), "--questions", str(q),
         "--max-new-tokens", "12", "--k", "2", "--rounds", "2", "--out-dir", str(out), "--summary", str(out / "summary.json")],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["lossless_mismatches"] == [] and res["errors"] == {}
    parts = {j["key"]: j["result"]["categories"] for j in res["jobs"]}
    assert set(parts) == {"none", "mtp@K=2"}
    assert {j["result"]["enforce_eager"] for j in res["jobs"]} == {True}  # what each engine ran with (auto: CPU eager)
    # two interleaved rounds (none, mtp, none, mtp), pooled: counters twice one round's, outputs one round's
    assert parts["none"]["first"]["requests"] == 4 and parts["none"]["second"]["requests"] == 2
    assert parts["none"]["first"]["output_tokens"] == 48 and len(parts["none"]["first"]["outputs"]["1"]) == 2
    assert len(parts["none"]["first"]["request_wall_s"]) == 4
    assert parts["none"]["first"]["drafts"] == 0
    spread = {(r["key"], r["round"]): r for r in res["round_spread"]}
    assert set(spread) == {("none", 1), ("none", 2), ("mtp@K=2", 1), ("mtp@K=2", 2)}
    assert spread[("none", 2)]["speedup_vs_none"] == 1.0 and spread[("mtp@K=2", 2)]["tau"] > 2.0
    assert (out / "engines" / "round2" / "mtp_K2.result.json").is_file()
    assert "| mtp@K=2 |" in (out / "table.md").read_text().split("Rounds")[1]
    # per-category deltas: the drafts of both categories add up to the run's total, and each category has some
    mtp = parts["mtp@K=2"]
    assert mtp["first"]["drafts"] > 0 and mtp["second"]["drafts"] > 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["lossless"] is True
    m = summ["methods"]["mtp"]
    assert m["tau"] > 2.0 and m["per_position_acceptance"][0] > 0.5 and len(m["per_position_acceptance"]) == 2
    assert summ["methods"]["none"]["tau"] == 1.0 and m["speedup_vs_none"] > 0
    assert (out / "plot.png").stat().st_size > 1000 and "| mtp | 2 |" in (out / "table.md").read_text()
    # per turn, around each request: the turns add up to the category, pooled over both rounds
    first = mtp["first"]
    assert len(first["per_turn"]) == 2 and len(mtp["second"]["per_turn"]) == 1
    for f in ("drafts", "accepted", "output_tokens", "requests"):
        assert sum(t[f] for t in first["per_turn"]) == first[f], f
    assert [a + b for a, b in zip(*(t["accepted_per_pos"] for t in first["per_turn"]))] == first["accepted_per_pos"]
    assert first["per_turn"][1]["requests"] == 2 and first["per_turn"][1]["drafts"] > 0
    turns = m["per_category"]["first"]["per_turn"]
    assert len(turns) == 2 and all(t["tau"] > 1.5 for t in turns) and "per_turn" not in m["per_category"]["second"]
    assert "| first turn 1 τ | first turn 2 τ |" in (out / "table.md").read_text()


def test_a_round_whose_outputs_differ_is_a_lossless_failure():
    from benchmarks.run import pool_rounds, round_mismatches

    def res(out, wall):
        return {"engine_start_s": 1.0, "categories": {"c": {
            "wall_s": wall, "output_tokens": 3, "requests": 1, "drafts": 2, "accepted": 1, "accepted_per_pos": [1, 0],
            "request_wall_s": [wall], "outputs": {"1": [out]}}}}

    same, other = res([1, 2, 3], 1.0), res([1, 2, 4], 3.0)
    assert round_mismatches("fastmtp@K=2", [same, res([1, 2, 3], 2.0)]) == []
    assert round_mismatches("fastmtp@K=2", [same, other]) == [
        {"job": "fastmtp@K=2", "round": 2, "category": "c", "question_id": "1", "differs_from": "round 1 of the same engine"}]
    pooled = pool_rounds([same, other])["categories"]["c"]
    assert (pooled["wall_s"], pooled["drafts"], pooled["accepted_per_pos"], pooled["outputs"]) == (4.0, 4, [2, 0], {"1": [[1, 2, 3]]})
