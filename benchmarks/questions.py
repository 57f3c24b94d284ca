"""Spec-Bench question files (one ``{question_id, category, turns: [...]}`` object a line) and the check that no
benchmark prompt leaked into training data (a head trained on the benchmark's prompts would inflate τ)."""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from training.files import read_jsonl

QUESTIONS_DIR = Path(__file__).resolve().parent / "question_sets"  # the data beside this module, named apart from it
# Bundled sets, in the order the headline run uses them.
BUNDLED = ("mt_bench.jsonl", "humaneval.jsonl", "math.jsonl", "chinese.jsonl")


class QuestionFormatError(ValueError):
    """A question file cannot be used; the message names the file and line."""


class BenchmarkOverlapError(ValueError):
    """A benchmark prompt also appears in training data."""


@dataclass(frozen=True)
class Question:
    question_id: str
    category: str
    turns: tuple[str, ...]
    source: str  # file:line, for messages


def read_questions(path: str | Path) -> list[Question]:
    """All questions of one Spec-Bench file; every problem is reported as ``file:line: ...``."""
    path = Path(path)
    if not path.is_file():
        raise QuestionFormatError(f"{path}: question file not found")
    out: list[Question] = []
    seen: set[str] = set()
    for n, obj in read_jsonl(path, QuestionFormatError):
        where = f"{path}:{n}"
        for key in ("question_id", "category", "turns"):
            if key not in obj:
                raise QuestionFormatError(f"{where}: field '{key}' is missing (Spec-Bench format: question_id, category, turns)")
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise QuestionFormatError(f"{where}: field 'turns' must be a non-empty list of non-empty strings")
        if not isinstance(obj["category"], str) or not obj["category"]:
            raise QuestionFormatError(f"{where}: field 'category' must be a non-empty string")
        qid = str(obj["question_id"])
        if qid in seen:
            raise QuestionFormatError(f"{where}: question_id {qid!r} appears twice in {path.name}")
        seen.add(qid)
        out.append(Question(qid, obj["category"], tuple(turns), where))
    if not out:
        raise QuestionFormatError(f"{path}: no questions")
    return out


def load_question_sets(
    paths: Iterable[str | Path], per_category: int | None = None, group_by: str = "category"
) -> "OrderedDict[str, list[Question]]":
    """Questions grouped by category or by file stem (file order kept); at most ``per_category`` of each group."""
    if group_by not in ("category", "file"):
        raise QuestionFormatError(f"group_by is {group_by!r}; expected 'category' or 'file'")
    groups: OrderedDict[str, list[Question]] = OrderedDict()
    ids: dict[tuple[str, str], str] = {}
    for p in paths:
        for q in read_questions(p):
            key = (q.category, q.question_id)
            if key in ids:
                raise QuestionFormatError(f"{q.source}: question {q.question_id!r} of category {q.category!r} already came from {ids[key]}")
            ids[key] = q.source
            group = groups.setdefault(q.category if group_by == "category" else Path(p).name.split(".")[0], [])
            if per_category is None or len(group) < per_category:
                group.append(q)
    return groups


def bundled_paths() -> list[Path]:
    return [QUESTIONS_DIR / name for name in BUNDLED]


# ------------------------------------------------------------------------------------------ overlap check

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case, Unicode form and whitespace do not make a prompt new."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def _strings(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _training_texts(path: Path) -> Iterator[str]:
    """Every string in a JSON-lines (or JSON array) training file, whatever its chat format."""
    if not path.is_file():
        raise QuestionFormatError(f"{path}: training prompt file not found")
    for _, obj in read_jsonl(path, QuestionFormatError, objects=False, arrays=True):
        yield from _strings(obj)


MIN_OVERLAP_CHARS = 32  # a benchmark turn this long counts as found inside a longer training string


def benchmark_turns(question_files: Iterable[str | Path]) -> dict[str, str]:
    """Every turn of the question files, normalised -> "SOURCE turn N" (the first file naming it)."""
    turns: dict[str, str] = {}
    for qf in question_files:
        for q in read_questions(qf):
            for i, t in enumerate(q.turns):
                turns.setdefault(normalize(t), f"{q.source} turn {i + 1}")
    return turns


class TrainingTexts:
    """The normalised strings of training files, to look turns up in.

    A turn counts as found when its normalised text equals a training string, or (for turns of at least
    ``min_chars`` characters, so that "Hi" does not match everything) occurs inside one.
    """

    def __init__(self, training_files: Iterable[str | Path], min_chars: int = MIN_OVERLAP_CHARS):
        texts = [normalize(s) for f in training_files for s in _training_texts(Path(f))]
        self._exact = set(texts)
        self._blob = "\x00".join(texts)
        self._min_chars = min_chars

    def contains(self, turn: str) -> bool:
        t = normalize(turn)
        return t in self._exact or (len(t) >= self._min_chars and t in self._blob)


def find_overlap(training_prompt_files: Iterable[str | Path], question_files: Iterable[str | Path],
                 min_chars: int = MIN_OVERLAP_CHARS):
    """[(question source, training file)] for every benchmark turn found in training data (`TrainingTexts`)."""
    turns = benchmark_turns(question_files)
    hits: list[tuple[str, str]] = []
    found: set[str] = set()
    for tf in training_prompt_files:
        texts = TrainingTexts([tf], min_chars)
        for t in turns:
            if t not in found and texts.contains(t):
                found.add(t)
                hits.append((turns[t], str(tf)))
    return hits


def check_no_overlap(training_prompt_files: Iterable[str | Path], question_files: Iterable[str | Path]) -> None:
    """Raise BenchmarkOverlapError naming every benchmark prompt that appears in the training prompts."""
    hits = find_overlap(list(training_prompt_files), list(question_files))
    if hits:
        shown = "; ".join(f"{q} found in {t}" for q, t in hits[:10])
        more = f" (and {len(hits) - 10} more)" if len(hits) > 10 else ""
        raise BenchmarkOverlapError(f"{len(hits)} benchmark prompt(s) appear in training data: {shown}{more}")


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(description="Fail if a benchmark prompt appears in training prompt files.")
    p.add_argument("training_files", nargs="+")
    p.add_argument("--questions", nargs="+", default=[str(x) for x in bundled_paths()])
    a = p.parse_args(argv)
    try:
        check_no_overlap(a.training_files, a.questions)
    except (BenchmarkOverlapError, QuestionFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"no overlap: {len(a.questions)} question file(s) vs {len(a.training_files)} training file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
