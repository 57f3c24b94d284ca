"""Dev prompts from held-out conversations, for served checks that must not touch the benchmark's questions.

The user turns of the first N usable conversations of each held-out file (fewer where a file has fewer), as a
Spec-Bench question file. A held-out conversation can still share a turn with a training one (a ShareGPT chat held
out of one set whose first turn another set trained on; a template task's stock follow-up), so with ``--not-in``
every conversation with any turn found in those training files is skipped (`benchmarks.questions.TrainingTexts`:
the benchmark's own overlap rule).

    python -m benchmarks.dev_questions OUT.jsonl --set public=runs/pipeline/eval-public.jsonl \\
        --set chinese=runs/pipeline/eval.jsonl:chinese --per-set 10 --not-in runs/pipeline/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.questions import QuestionFormatError, TrainingTexts
from training.files import atomic_write, read_jsonl


def parse_set(spec: str) -> tuple[str, Path, str | None]:
    """NAME=FILE[:CATEGORY] -> (name, file, category or None)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise QuestionFormatError(f"--set {spec!r}: expected NAME=FILE or NAME=FILE:CATEGORY")
    path, _, category = rest.partition(":")
    return name, Path(path), category or None


def users(conversation: dict, where: str) -> list[str]:
    msgs = conversation.get("messages")
    if not isinstance(msgs, list):
        raise QuestionFormatError(f"{where}: field 'messages' missing or not a list (expected a curated conversation)")
    turns = [m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise QuestionFormatError(f"{where}: no user turn, or a user turn that is not a non-empty string")
    return turns


def dev_questions(sets: list[tuple[str, Path, str | None]], per_set: int,
                  training: TrainingTexts | None) -> tuple[list[dict], dict[str, int]]:
    """(Spec-Bench rows: at most ``per_set`` a set, conversations skipped per set for a turn in training data)."""
    rows: list[dict] = []
    skipped: dict[str, int] = {}
    for name, path, category in sets:
        if not path.is_file():
            raise QuestionFormatError(f"--set {name}: {path} not found")
        kept = skipped[name] = 0
        for n, conv in read_jsonl(path, QuestionFormatError):
            if kept == per_set:
                break
            if category is not None and conv.get("category") != category:
                continue
            where = f"{path}:{n}"
            if "id" not in conv:
                raise QuestionFormatError(f"{where}: field 'id' is missing")
            turns = users(conv, where)
            if training is not None and any(training.contains(t) for t in turns):
                skipped[name] += 1
                continue
            rows.append({"question_id": str(conv["id"]), "category": name, "turns": turns})
            kept += 1
        if kept == 0:
            raise QuestionFormatError(f"--set {name}: {path} has no usable conversation"
                                      f"{f' of category {category!r}' if category else ''}")
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the question file to write (Spec-Bench JSON lines)")
    p.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=FILE[:CATEGORY]",
                   help="held-out conversations (curated JSON lines), labelled NAME; only CATEGORY's when given")
    p.add_argument("--per-set", type=int, default=10, help="at most this many conversations a set, in file order")
    p.add_argument("--not-in", nargs="+", type=Path, default=[], metavar="FILE",
                   help="training files: conversations with a turn found in them are skipped")
    a = p.parse_args(argv)
    try:
        if a.per_set < 1:
            raise QuestionFormatError(f"--per-set must be >= 1, got {a.per_set}")
        sets = [parse_set(s) for s in a.sets]
        names = [s[0] for s in sets]
        if len(set(names)) != len(names):
            raise QuestionFormatError(f"--set names must differ, got {names}")
        training = TrainingTexts(a.not_in) if a.not_in else None
        rows, skipped = dev_questions(sets, a.per_set, training)
    except QuestionFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write(a.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    kept = {name: sum(r["category"] == name for r in rows) for name in names}
    print(f"{a.out}: {len(rows)} questions {kept}; skipped for a turn in training data: {skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
