"""benchmarks.step_profile: bad input refused before any engine; a real run splits decode steps into components
that add up (none has no drafter time; fastmtp with a draft map runs K draft steps per verification step and its
language lookup)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.step_profile import main as profile_main

REPO = Path(__file__).resolve().parents[2]
DRAFTER_PARTS = ("propose", "drafter", "draft_forward", "draft_pick", "draft_attention")


def _questions(path: Path) -> Path:
    rows = [{"question_id": 0, "category": "a", "turns": ["abc"]},
            {"question_id": 1, "category": "b", "turns": ["klm", "pqr"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_inputs_exit_2_before_any_engine(tmp_path, tiny_random_mimo, capsys):
    q = _questions(tmp_path / "q.jsonl")
    base = ["--model", str(tiny_random_mimo), "--questions", str(q), "--out-dir", str(tmp_path / "out")]
    assert profile_main(base + ["--method", "fastmtp"]) == 2
    assert "must include 'none'" in capsys.readouterr().err
    assert profile_main(base + ["--max-new-tokens", "1"]) == 2
    assert "--max-new-tokens is 1" in capsys.readouterr().err
    assert profile_main(base + ["--k", "0"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert profile_main(base + ["--engine-args", '{"enforce_eager": false}']) == 2
    assert "eager" in capsys.readouterr().err
    assert profile_main(["--model", str(tmp_path / "missing")] + base[2:]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_profile_splits_decode_steps_into_components(tmp_path, tiny_counting_mimo):
    q = _questions(tmp_path / "q.jsonl")
    out = tmp_path / "res"
    en = tmp_path / "en.pt"  # a pruned draft map for the byte tokenizer: ASCII plus the specials
    torch.save(list(range(128)) + [256, 257, 258], en)
    fastmtp = {"speculative_config": {"method": "fastmtp", "draft_vocab": {"maps": {"en": str(en)}}}}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.step_profile", "--model", str(tiny_counting_mimo), "--questions", str(q),
         "--method", "none", "--method", f"fastmtp={json.dumps(fastmtp)}", "--k", "2", "--max-new-tokens", "12",
         "--out-dir", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    rows = {r["key"]: r for r in res["rows"]}
    assert set(rows) == {"none", "fastmtp@K=2"}
    parents = {name: parent for name, parent, _ in res["engines"]["none"]["profile"]["components"]}
    for key, r in rows.items():
        ms = r["ms_per_step"]
        assert r["decode_steps"] > 0 and r["prefill_steps"] == 3  # one prefill per request (3 turns)
        for part in ("schedule", "execute_model", "target_forward", "target_attention", "compute_logits",
                     "sample_tokens", "sample", "update_from_output", "process_outputs"):
            assert ms[part] > 0, (key, part)
        # each parent's timed children fit inside it; the top-level parts fit inside the step
        for name in ms:
            kids = [c for c, p in parents.items() if p == name and c in ms]
            assert sum(ms[c] for c in kids) <= ms[name] * 1.001 + 1e-6, (key, name, kids)
        assert sum(ms[c] for c, p in parents.items() if p == "step" and c in ms) <= r["step_ms"]
    none, fast = rows["none"], rows["fastmtp@K=2"]
    assert all(p not in none["ms_per_step"] for p in DRAFTER_PARTS) and none["draft_step_ms"] is None
    assert none["per_call"]["target_forward"].keys() == {"1"} and none["tokens_per_step"] == 1.0
    assert all(fast["ms_per_step"][p] > 0 for p in DRAFTER_PARTS + ("fastmtp_step1", "fastmtp_language"))
    assert fast["calls_per_step"]["fastmtp_language"] == 1.0  # one request per step at batch 1
    assert fast["per_call"]["target_forward"].keys() == {"3"}  # every decode step verifies K=2 drafts
    assert fast["per_call"]["sample"].keys() == {"rejection sampler"}
    assert fast["draft_steps_per_step"] == 2.0 and fast["draft_step_ms"] > 0
    assert fast["tokens_per_step"] > 2.0 and fast["tau"] > 2.5  # the counting head's drafts are accepted
    table = (out / "table.md").read_text()
    assert "| ms per decode step | none | fastmtp@K=2 |" in table and "draft step, % of none step" in table
