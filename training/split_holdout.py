"""Split a conversation JSONL in two, stably: by a hash of each record's id (a held-out set that stays the same
as the corpus grows and across sessions), or by category.

    python -m training.split_holdout curated.jsonl --train train.jsonl --eval eval.jsonl --every 50
    python -m training.split_holdout train.jsonl --by-category chinese --train en.jsonl --eval zh.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from training.files import atomic_write


class SplitError(ValueError):
    pass


def held_out(record_id: str, every: int) -> bool:
    """True for about one id in ``every``, decided by the id alone."""
    return int(hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:8], 16) % every == 0


def split(src: Path, train: Path, held: Path, *, every: int | None = None, category: str | None = None) -> tuple[int, int]:
    """Write the two parts atomically; returns (train lines, held-out lines)."""
    if (every is None) == (category is None):
        raise SplitError("give exactly one of --every and --by-category")
    if every is not None and every < 2:
        raise SplitError(f"--every must be >= 2, got {every}")
    parts: tuple[list[str], list[str]] = ([], [])
    with open(src, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["id"] if every is not None else rec["category"]
            except (json.JSONDecodeError, KeyError, TypeError):
                field = "id" if every is not None else "category"
                raise SplitError(f"{src}:{lineno}: not a JSON object with an {field!r} field") from None
            second = held_out(str(key), every) if every is not None else key == category
            parts[second].append(line if line.endswith("\n") else line + "\n")
    for path, lines in ((train, parts[0]), (held, parts[1])):
        atomic_write(path, "".join(lines))
    return len(parts[0]), len(parts[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.split_holdout", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("--train", type=Path, required=True, help="records not held out / not of the category")
    p.add_argument("--eval", type=Path, required=True, help="held-out records / records of the category")
    p.add_argument("--every", type=int, default=None, help="hold out about one record id in N")
    p.add_argument("--by-category", default=None, help="second file gets this category instead")
    a = p.parse_args(argv)
    try:
        n_train, n_eval = split(a.src, a.train, a.eval, every=a.every, category=a.by_category)
    except (SplitError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.src}: {n_train} -> {a.train}, {n_eval} -> {a.eval}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
