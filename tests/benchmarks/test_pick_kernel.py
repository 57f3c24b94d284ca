"""The pick-kernel benchmark runs end to end (tiny shapes, both kernels, both dtypes) and reports what it promises."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.pick_kernel import main, run, to_markdown


def test_benchmark_times_both_kernels_for_every_dtype_and_size(tmp_path):
    r = run(32, [16, 64], ["fp32", "bf16"], reps=3, flush_mb=1)
    names = {f"{dt}/{n}/b1/{k}" for dt in ("fp32", "bf16") for n in (16, 64) for k in ("torch", "vllm")}
    assert set(r["median_ms"]) == names and all(len(v) == 3 and min(v) > 0 for v in r["raw_ms"].values())
    md = to_markdown(r)
    assert "| bf16 | 64 | 1 |" in md and "| fp32 | 16 | 1 |" in md and "would keep" not in md
    main(["--hidden", "16", "--map-sizes", "8", "--dtypes", "fp32", "--reps", "2", "--out-dir", str(tmp_path)])
    assert json.loads((tmp_path / "pick_kernel_h16.json").read_text())["map_sizes"] == [8]


def test_batches_are_timed_and_the_auto_choice_is_named(tmp_path):
    """With batches 1 and 8 timed, the table says which kernel the drafter's "auto" would keep from them."""
    main(["--hidden", "16", "--map-sizes", "32", "--dtypes", "fp32", "--batches", "1", "8", "--reps", "2",
          "--out-dir", str(tmp_path)])
    r = json.loads((tmp_path / "pick_kernel_h16.json").read_text())
    assert r["batches"] == [1, 8]
    assert set(r["median_ms"]) == {f"fp32/32/b{m}/{k}" for m in (1, 8) for k in ("torch", "vllm")}
    md = (tmp_path / "pick_kernel_h16.md").read_text()
    assert "| fp32 | 32 | 8 |" in md
    assert re.search(r"fp32, 32 rows: faster by these timings: (torch|vllm); auto uses this choice", md)


def test_bad_sizes_are_refused_before_any_work(tmp_path):
    with pytest.raises(SystemExit):
        main(["--map-sizes", "0", "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--batches", "0", "--out-dir", str(tmp_path)])
    assert not list(tmp_path.iterdir())
