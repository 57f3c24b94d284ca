"""benchmarks/results/offline_json.py: offline_heads.sh lines + heads taken from an earlier offline.json."""
import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "offline_json.py"


def run(*argv):
    old = sys.argv
    sys.argv = [str(SCRIPT), *map(str, argv)]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        sys.argv = old


def test_lines_and_taken_heads(tmp_path):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"note": "x", "heads": {
        "old": {"seen": [70.0, 50.0, 30.0], "a": [60.0, 40.0, 20.0]},
        "other": {"a": [1.0, 2.0, 3.0]}}}))
    lines = tmp_path / "lines.txt"
    lines.write_text("old b 61.5 41 21.25\nnew a 62 42 22\nnew b 63 43 23\n")
    out = tmp_path / "offline.json"
    run(lines, out, "--note", "what", "--take", f"{earlier}:old=base", "--drop-set", "seen")
    data = json.loads(out.read_text())
    assert data["note"] == "what"
    # the taken head comes first under its new name, without the dropped set; a line of a head not taken adds it
    assert list(data["heads"]) == ["base", "old", "new"]
    assert data["heads"]["base"] == {"a": [60.0, 40.0, 20.0]}
    assert data["heads"]["old"] == {"b": [61.5, 41.0, 21.25]}
    assert data["heads"]["new"] == {"a": [62.0, 42.0, 22.0], "b": [63.0, 43.0, 23.0]}


def test_line_merges_into_a_taken_head(tmp_path):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"note": "x", "heads": {"h": {"a": [1.0, 2.0, 3.0]}}}))
    lines = tmp_path / "lines.txt"
    lines.write_text("h b 4 5 6\n")
    out = tmp_path / "offline.json"
    run(lines, out, "--note", "n", "--take", f"{earlier}:h")
    assert json.loads(out.read_text())["heads"] == {"h": {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}}


@pytest.mark.parametrize("bad, take, message", [
    ("h a 1 2\n", [], "lines.txt:1: expected 'NAME SET POS1 POS2 POS3'"),
    ("h a 1 2 3\nh b 1 x 3\n", [], "lines.txt:2: expected 'NAME SET POS1 POS2 POS3'"),
    ("h a 1 2 3\n", ["--take", "EARLIER:missing"], "no head 'missing'"),
    ("h a 1 2 3\n", ["--take", "nofile"], "expected FILE:HEAD"),
    ("h a 1 2 3\n", ["--take", "EARLIER.missing:h"], "is not a readable offline.json"),
])
def test_bad_input_named_and_nothing_written(tmp_path, capsys, bad, take, message):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"note": "x", "heads": {"h": {"a": [1.0, 2.0, 3.0]}}}))
    lines = tmp_path / "lines.txt"
    lines.write_text(bad)
    out = tmp_path / "offline.json"
    out.write_text("kept")
    with pytest.raises(SystemExit):
        run(lines, out, "--note", "n", *[t.replace("EARLIER", str(earlier)) for t in take])
    assert message in capsys.readouterr().err
    assert out.read_text() == "kept"
