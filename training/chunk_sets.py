"""Cut the curated training and held-out conversations into the files the state caches are built from.

A state cache is built per file (``training.cache_states``), and rebuilding one costs minutes per 100k tokens on a
CPU, so the files must not change as the corpus grows. Training conversations go to one file per prompt set and
per ``lines`` prompt lines (``train-SET-chunkN.jsonl``; the first set, ``mixed.jsonl``, keeps its historical names
``train-chunkN.jsonl``): distilling more adds a file and leaves the others byte-identical. Held-out conversations go
to one file per prompt set (``eval-SET.jsonl``), plus ``eval-first105.jsonl`` (the first 105 held-out records: the
first set's, the offline eval set). A file whose lines did not change is not rewritten.

    python -m training.chunk_sets runs/pipeline/train.jsonl runs/pipeline/eval.jsonl --out runs/pipeline
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.files import atomic_write

FIRST_SET = "mixed.jsonl"
FIRST_EVAL = 105


class ChunkError(ValueError):
    pass


def _set_and_line(src: Path, lineno: int, line: str) -> tuple[str, int]:
    """A distill id is PROMPT_FILE:LINE:HASH: the prompt file and the 1-based prompt line it answers."""
    try:
        prompt_file, prompt_line = json.loads(line)["id"].split(":")[:2]
        n = int(prompt_line)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        raise ChunkError(f"{src}:{lineno}: expected a JSON object whose 'id' is PROMPT_FILE:LINE:HASH "
                         "(training.distill's ids)") from None
    if not prompt_file.endswith(".jsonl") or n < 1:
        raise ChunkError(f"{src}:{lineno}: id names {prompt_file!r} line {n}; expected a .jsonl prompt file "
                         "and a line >= 1")
    return prompt_file, n


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise ChunkError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        return [(n, l if l.endswith("\n") else l + "\n") for n, l in enumerate(f, 1) if l.strip()]


def chunk_parts(train: Path, held_out: Path, lines: int = 3072) -> dict[str, list[str]]:
    """File stem -> its lines, in source order: ``train-...-chunkN`` and ``eval-SET`` / ``eval-first105``."""
    if lines < 1:
        raise ChunkError(f"--lines must be >= 1, got {lines}")
    parts: dict[str, list[str]] = {}
    for n, line in _lines(train):
        prompt_file, prompt_line = _set_and_line(train, n, line)
        chunk = (prompt_line - 1) // lines
        name = f"chunk{chunk}" if prompt_file == FIRST_SET else f"{prompt_file[:-6]}-chunk{chunk}"
        parts.setdefault(f"train-{name}", []).append(line)
    rows = _lines(held_out)
    parts["eval-first105"] = [line for _, line in rows[:FIRST_EVAL]]
    for n, line in rows:
        prompt_file, _ = _set_and_line(held_out, n, line)
        if prompt_file != FIRST_SET:
            parts.setdefault(f"eval-{prompt_file[:-6]}", []).append(line)
    return parts


def write_parts(parts: dict[str, list[str]], out: Path) -> list[tuple[Path, int, bool]]:
    """Write each part as OUT/STEM.jsonl unless it already holds exactly those lines (its mtime then still says
    when its records last changed); returns (path, lines, written)."""
    done = []
    for stem, lines in sorted(parts.items()):
        path = out / f"{stem}.jsonl"
        text = "".join(lines)
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        if not same:
            atomic_write(path, text)
        done.append((path, len(lines), not same))
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.chunk_sets", description=__doc__.split("\n\n")[0])
    p.add_argument("train", type=Path, help="training conversations (training.split_holdout --train)")
    p.add_argument("held_out", type=Path, help="held-out conversations (training.split_holdout --eval)")
    p.add_argument("--out", type=Path, required=True, help="directory for the train-*.jsonl / eval-*.jsonl files")
    p.add_argument("--lines", type=int, default=3072, help="prompt lines per training chunk")
    a = p.parse_args(argv)
    try:
        parts = chunk_parts(a.train, a.held_out, a.lines)  # every input checked before anything is written
    except ChunkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, n, written in write_parts(parts, a.out):
        print(f"{path}: {n} conversations{'' if written else ' (unchanged)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
