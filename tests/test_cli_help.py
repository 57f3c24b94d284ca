"""Every command the docs name answers ``--help``: argparse formats each help string with ``%``, so one bare
percent sign in an option's help (HfArgumentParser passes dataclass metadata straight through) crashes ``--help``
with a TypeError instead of printing the options."""
from __future__ import annotations

import contextlib
import io
import runpy
import sys

import pytest

COMMANDS = [
    "training.public_prompts",
    "training.synth_prompts",
    "training.distill",
    "training.curate",
    "training.split_holdout",
    "training.cache_states",
    "training.graft",
    "training.finetune",
    "vocab_maps.build",
    "vocab_maps.recipe",
    "benchmarks.demo_model",
    "benchmarks.questions",
    "benchmarks.run",
    "benchmarks.step_costs",
    "benchmarks.train_throughput",
    "benchmarks.map_coverage",
    "benchmarks.concurrency",
    "benchmarks.ablations",
]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_prints_usage(module, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0, f"python -m {module} --help exited {exit_info.value.code}"
    assert "usage:" in out.getvalue()
