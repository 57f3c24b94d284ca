"""Every command answers ``--help``: argparse formats each help string with ``%``, so one bare
percent sign in an option's help (HfArgumentParser passes dataclass metadata straight through) crashes ``--help``
with a TypeError instead of printing the options."""
from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# every module run as `python -m ...` that parses options (the engine workers read a job file instead)
COMMANDS = sorted(
    ".".join(f.relative_to(ROOT).with_suffix("").parts)
    for package in ("training", "vocab_maps", "benchmarks")
    for f in (ROOT / package).glob("*.py")
    if '__name__ == "__main__"' in (text := f.read_text(encoding="utf-8"))
    and ("argparse" in text or "HfArgumentParser" in text)
)


@pytest.mark.parametrize("module", COMMANDS)
def test_help_prints_usage(module, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0, f"python -m {module} --help exited {exit_info.value.code}"
    assert "usage:" in out.getvalue()


def test_the_commands_are_found():
    assert {"training.finetune", "training.distill", "vocab_maps.build", "benchmarks.run"} <= set(COMMANDS)
