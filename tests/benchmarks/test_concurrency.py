"""benchmarks.concurrency: closed-loop load on real engines (none, fastmtp, fastmtp with vLLM's batch-size
schedule that stops drafting above batch 1), outputs compared with no speculation; bad input refused first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.concurrency import main as conc_main

REPO = Path(__file__).resolve().parents[2]


def _questions(path: Path) -> Path:
    rows = [{"question_id": i, "category": c, "turns": [t]}
            for i, (c, t) in enumerate([("a", "abc"), ("b", "klm"), ("a", "pqr"), ("b", "xyz")])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_inputs_exit_2_before_any_engine(tmp_path, tiny_random_mimo, capsys):
    q = _questions(tmp_path / "q.jsonl")
    base = ["--model", str(tiny_random_mimo), "--questions", str(q), "--out-dir", str(tmp_path / "out")]
    assert conc_main(base + ["--levels", "0", "4"]) == 2
    assert "--levels [0, 4]" in capsys.readouterr().err
    assert conc_main(base + ["--method", "fastmtp"]) == 2
    assert "must include 'none'" in capsys.readouterr().err
    assert conc_main(base + ["--engine-args", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_load_run_reports_every_level_and_the_schedule_stops_drafting_above_batch_one(tmp_path, tiny_counting_mimo):
    q = _questions(tmp_path / "q.jsonl")
    dyn = {"speculative_config": {"method": "fastmtp", "num_speculative_tokens": 2,
                                  "num_speculative_tokens_per_batch_size": [[1, 1, 2], [2, 3, 0]]}}
    out = tmp_path / "res"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.concurrency", "--model", str(tiny_counting_mimo), "--questions", str(q),
         "--method", "none", "--method", f"fastmtp-dyn={json.dumps(dyn)}", "--k", "2",
         "--levels", "1", "3", "--waves", "1", "--min-requests", "3", "--max-new-tokens", "10", "--out-dir", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["concurrency"]): r for r in res["rows"]}
    assert set(rows) == {(m, c) for m in ("none", "fastmtp-dyn@K=2") for c in (1, 3)}
    assert all(r["requests"] == 3 and r["tok_per_s"] > 0 for r in rows.values())
    assert rows[("fastmtp-dyn@K=2", 1)]["identical_to_none"] == 1.0 and rows[("fastmtp-dyn@K=2", 3)]["identical_to_none"] == 1.0
    levels = {lv["concurrency"]: lv for lv in res["engines"]["fastmtp-dyn@K=2"]["levels"]}
    assert levels[1]["drafts"] > 0 and levels[3]["drafts"] == 0  # the schedule: K=2 at batch 1, none above
    assert rows[("fastmtp-dyn@K=2", 1)]["tau"] > 1.5  # the counting head drafts correctly
    assert "| fastmtp-dyn@K=2 | 3 | 3 |" in (out / "table.md").read_text()
    assert (out / "plot.png").stat().st_size > 1000
