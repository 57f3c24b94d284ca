"""The draft-step cost benchmark runs end to end (tiny shapes) and reports what the results files promise."""

from __future__ import annotations

from benchmarks.draft_vocab_cost import MTPModule, Shape, run, to_markdown


def test_benchmark_runs_and_reports_ratios():
    shape = Shape(vocab=2048, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16)
    r = run(2, "fp32", 8, shape=shape, map_sizes={"a": 128, "b": 512})
    assert set(r["median_ms"]) == {"head/full", "head/a", "head/b", "step/full", "step/a", "step/b", "mtp/-"}
    assert set(r["step_speedup_vs_full"]) == {"a", "b"} and all(len(v) == 2 for v in r["raw_ms"].values())
    md = to_markdown(r)
    assert "| full (2,048) |" in md and "| a (128) |" in md


def test_mtp_module_shapes():
    import torch

    shape = Shape(vocab=10, hidden=32, intermediate=48, heads=4, kv_heads=2, head_dim=8)
    m = MTPModule(5, shape)
    out = m(torch.randn(1, 32), torch.randn(1, 32))
    assert out.shape == (1, 32) and torch.isfinite(out).all()
