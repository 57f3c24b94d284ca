"""benchmarks.step_costs recovers per-step costs from benchmark counters (synthetic runs with known costs)."""

from __future__ import annotations

import json

import pytest

from benchmarks.step_costs import analyse, main


def _job(method, k, tokens, drafts, accepted, wall, requests=4):
    outputs = {f"q{i}": [[0]] for i in range(requests)}
    part = {"output_tokens": tokens, "wall_s": wall, "drafts": drafts, "accepted": accepted, "outputs": outputs,
            "accepted_per_pos": []}
    return {"method": method, "k": k, "key": f"{method}-k{k}", "result": {"categories": {"all": part}}}


def _results():
    jobs = [_job("none", None, 400, 0, 0, 400 * 0.050)]  # 50 ms per step
    for k in (1, 2, 3, 4):
        drafts = 100 * k
        steps = 4 + drafts
        jobs.append(_job("fastmtp", k, 4 + drafts + drafts // 2, drafts, drafts // 2, steps * (0.060 + 0.010 * k)))
    jobs.append(_job("mtp", 3, 300, 150, 140, 154 * 0.1))
    return {"jobs": jobs}


def test_fit_recovers_draft_step_and_verify_overhead(tmp_path, capsys):
    a = analyse(_results())
    assert a["baseline_ms_per_step"] == pytest.approx(50.0)
    f = a["fits"]["fastmtp"]
    assert f["per_draft_step_ms"] == pytest.approx(10.0)
    assert f["fixed_ms"] == pytest.approx(60.0)
    assert f["verify_overhead_ms"] == pytest.approx(10.0)
    assert "mtp" not in a["fits"]  # one K: no line to fit
    row = next(r for r in a["rows"] if r["method"] == "fastmtp" and r["k"] == 2)
    assert row["tau"] == pytest.approx(1.5) and row["ms_per_step"] == pytest.approx(80.0)

    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    assert main([str(path)]) == 0
    md = (tmp_path / "step_costs.md").read_text()
    assert "| fastmtp | 60.0 | 10.0 | 10.0 |" in md and md in capsys.readouterr().out


def test_unusable_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit):
        main([str(path)])
    assert "not a usable benchmarks.run results.json (KeyError" in capsys.readouterr().err
    assert not (tmp_path / "step_costs.md").exists()


def test_steps_without_drafts_are_counted():
    # prompt lookup: 4 prefills, 100 decode steps that drafted (accepting 80), 60 that found no match and drafted
    # nothing; 20 ms a step. vLLM's counters only see the 100 drafting steps.
    tokens = 4 + 160 + 80
    a = analyse({"jobs": [_job("ngram", 3, tokens, 100, 80, 164 * 0.020)]})
    row = a["rows"][0]
    assert row["steps"] == 164 and row["drafting_steps"] == 100
    assert row["ms_per_step"] == pytest.approx(20.0)
    assert row["tau"] == pytest.approx(1.8)  # vLLM's, per drafting step
    assert row["tokens_per_step"] == pytest.approx(tokens / 164)
