"""The committed training prompts and distilled corpora hold no benchmark turn (the rule benchmarks.run enforces
for the files it is given, here for every file in the repository, so a new draw cannot slip past a run that forgot
to list it)."""

from pathlib import Path

import pytest

from benchmarks.questions import bundled_paths, find_overlap

DATA = Path(__file__).resolve().parents[2] / "data" / "smollm2"
FILES = sorted(DATA.glob("prompts/*.jsonl.gz")) + sorted(DATA.glob("distill*.jsonl.gz"))


def test_the_committed_data_is_found():
    names = {p.name for p in FILES}
    assert {"mixed.jsonl.gz", "public3.jsonl.gz", "distill.jsonl.gz"} <= names, names


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_committed_training_file_holds_no_benchmark_turn(path):
    assert find_overlap([path], bundled_paths()) == []
