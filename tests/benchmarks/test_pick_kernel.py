"""The pick-kernel benchmark runs end to end (tiny shapes, both kernels, both dtypes) and reports what it promises."""

from __future__ import annotations

import json

import pytest

from benchmarks.pick_kernel import main, run, to_markdown


def test_benchmark_times_both_kernels_for_every_dtype_and_size(tmp_path):
    r = run(32, [16, 64], ["fp32", "bf16"], reps=3, flush_mb=1)
    names = {f"{dt}/{n}/{k}" for dt in ("fp32", "bf16") for n in (16, 64) for k in ("torch", "vllm")}
    assert set(r["median_ms"]) == names and all(len(v) == 3 and min(v) > 0 for v in r["raw_ms"].values())
    md = to_markdown(r)
    assert "| bf16 | 64 |" in md and "| fp32 | 16 |" in md
    main(["--hidden", "16", "--map-sizes", "8", "--dtypes", "fp32", "--reps", "2", "--out-dir", str(tmp_path)])
    assert json.loads((tmp_path / "pick_kernel_h16.json").read_text())["map_sizes"] == [8]


def test_bad_sizes_are_refused_before_any_work(tmp_path):
    with pytest.raises(SystemExit):
        main(["--map-sizes", "0", "--out-dir", str(tmp_path)])
    assert not list(tmp_path.iterdir())
