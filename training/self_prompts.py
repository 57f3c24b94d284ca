"""Prompts the model writes itself (Magpie, Xu et al. 2024): the chat template rendered up to where a user's words
begin, sampled, continues with a request of the kinds the model was instruction-tuned on, and ends it with the
template's end-of-turn token. People's prompts were the data that moved the head, and the bundled collections of them
are used up (``training.public_prompts``); this source has no end, costs ~70 generated tokens a prompt, and its
prompts are ones the model answers fluently (it was tuned on their like), the answers ``training.distill`` then writes.

    python -m training.self_prompts --model DIR --n 3000 --out data/smollm2/prompts/self.jsonl \\
        --exclude data/smollm2/prompts/*.jsonl.gz

Kept, in generation order until ``--n``: a request that ended on its own (not cut at ``--max-tokens``), 16-1,500
characters, English or Chinese (``public_prompts.language``; category ``self`` / ``chinese``), not looping (>= 50 %
repeated 10-character n-grams, ``training.curate``'s rule), holding no bundled benchmark turn, not repeating a kept
prompt or an ``--exclude`` file's first turn (normalised), and not a near-duplicate of a kept one (MinHash over
5-character shingles, Jaccard >= ``--near-dup``). ``--openers 'Write|Explain|...'`` starts each candidate with
one of those words, drawn per candidate, and the model writes the rest: the model's own requests are mostly
"Can you ..." and "I'm ...", and first words widen the kinds of task. Every candidate has its own sampling seed
and opener draw (``--seed`` and its index), so a rerun writes the same file. The written file is checked against every bundled benchmark set before it
replaces anything; the filter counts go to ``OUT.stats.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.questions import bundled_paths, normalize
from training.curate import NearDuplicates, repetition_ratio
from training.files import atomic_write
from training.public_prompts import MAX_CHARS, MIN_CHARS, BenchmarkFilter, earlier_keys, language, write_checked

SENTINEL = "\u2063the user writes here\u2063"  # stands in for the user's words while the template is rendered
CATEGORY = {"en": "self", "zh": "chinese"}


class SelfPromptsError(ValueError):
    """A model or template this module cannot write prompts with; the message says which and why."""


def pre_query(tokenizer, system: str | None = None) -> str:
    """The chat template's text before a user's first words (its default system turn included, if it has one)."""
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": SENTINEL}
    ]
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    except Exception as e:  # noqa: BLE001 - no template, or one that rejects the messages
        raise SelfPromptsError(f"the tokenizer's chat template cannot render a user turn: {e}") from None
    if text.count(SENTINEL) != 1:
        raise SelfPromptsError("the chat template does not place the user's words once, verbatim; cannot cut before them")
    return text[: text.index(SENTINEL)]


class Keep:
    """The filters, in order; ``reasons`` counts what each dropped."""

    def __init__(self, exclude: set, near_dup: float, max_loop: float = 0.5):
        self.benchmark = BenchmarkFilter(bundled_paths())
        self.seen = set(exclude)
        self.near = NearDuplicates(near_dup)
        self.max_loop = max_loop
        self.reasons: Counter = Counter()

    def reason(self, text: str, finish_reason: str | None) -> str | None:
        """Why ``text`` is dropped (None: kept, and remembered for the repeat checks)."""
        if finish_reason != "stop":
            return "cut"
        if not MIN_CHARS <= len(text) <= MAX_CHARS:
            return "length"
        if language(text) not in CATEGORY:
            return "language"
        if repetition_ratio(text) >= self.max_loop:
            return "loop"
        if not self.benchmark(text):
            return "benchmark"
        key = normalize(text)
        if key in self.seen:
            return "repeat"
        m = self.near.minhash(text)
        if self.near.matches(m):
            return "near-duplicate"
        self.seen.add(key)
        self.near.add(m)
        return None

    def __call__(self, text: str, finish_reason: str | None) -> bool:
        why = self.reason(text, finish_reason)
        self.reasons[why or "kept"] += 1
        return why is None


def opener_of(openers: list[str], seed: int, i: int) -> str:
    """Candidate ``i``'s first words ('' without ``--openers``): drawn per candidate, so a rerun draws the same."""
    return random.Random(f"{seed}:{i}").choice(openers) if openers else ""


def generate(llm, tok, prefix: str, args: argparse.Namespace, start: int, count: int) -> list[tuple[int, str, str | None, int]]:
    """(index, text, finish reason, tokens) of candidates ``start`` .. ``start + count - 1``, one seed each; a
    candidate's text is its opener (if any) and what the model wrote after it."""
    from vllm import SamplingParams

    idx = range(start, start + count)
    heads = [opener_of(args.openers, args.seed, i) for i in idx]
    params = [SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                             seed=args.seed * 1_000_003 + i) for i in idx]
    prompts = [{"prompt_token_ids": tok(prefix + h, add_special_tokens=False)["input_ids"]} for h in heads]
    outs = llm.generate(prompts, params, use_tqdm=False)
    return [(i, (h + o.outputs[0].text).strip(), o.outputs[0].finish_reason, len(o.outputs[0].token_ids))
            for i, h, o in zip(idx, heads, outs)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.self_prompts", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory, as vLLM takes it")
    p.add_argument("--out", type=Path, required=True, help="prompt file to write (Spec-Bench lines)")
    p.add_argument("--n", type=int, required=True, help="prompts to keep")
    p.add_argument("--max-candidates", type=int, default=None, help="stop after this many (default: 3 x --n)")
    p.add_argument("--batch", type=int, default=512, help="candidates generated per engine call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=192, help="a request longer than this is dropped as cut")
    p.add_argument("--near-dup", type=float, default=0.7, help="MinHash Jaccard at which a prompt is a near-duplicate")
    p.add_argument("--openers", default="", metavar="WORD|WORD|...",
                   help="first words a candidate starts with, one drawn per candidate (default: none, the model's own)")
    p.add_argument("--system-prompt", default=None, help="a system turn before the user's (default: the template's)")
    p.add_argument("--exclude", nargs="*", type=Path, default=[], metavar="FILE",
                   help="earlier prompt files (JSONL, optionally .gz): their first turns are not repeated")
    p.add_argument("--dtype", default="native",
                   help="vLLM's dtype, or native (default): bfloat16 where this machine computes it natively, else float32")
    p.add_argument("--max-model-len", type=int, default=1024)
    return p


def validate(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.n < 1:
        p.error(f"--n must be >= 1, got {a.n}")
    a.max_candidates = a.max_candidates or 3 * a.n
    a.openers = [w.strip() for w in a.openers.split("|") if w.strip()]
    if a.max_candidates < a.n:
        p.error(f"--max-candidates ({a.max_candidates}) is below --n ({a.n})")
    if a.batch < 1 or a.max_tokens < 1 or a.temperature <= 0 or not 0 < a.top_p <= 1 or not 0 < a.near_dup <= 1:
        p.error("--batch and --max-tokens must be >= 1, --temperature > 0, --top-p and --near-dup in (0, 1]")
    missing = [str(f) for f in a.exclude if not f.is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    if not a.out.parent.is_dir():
        p.error(f"--out: no such directory: {a.out.parent}")


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    validate(p, a)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(a.model)
        prefix = pre_query(tok, a.system_prompt)
    except (OSError, SelfPromptsError) as e:
        print(f"error: {a.model}: {e}", file=sys.stderr)
        return 1
    keep = Keep(earlier_keys(a.exclude), a.near_dup)  # reads the --exclude files before the engine starts

    from training.distill import offline_engine
    from training.precision import resolve_dtype

    llm = offline_engine({"model": a.model, "dtype": resolve_dtype(a.dtype), "max_model_len": a.max_model_len,
                          "enforce_eager": True})
    kept: dict[str, list[dict]] = {}
    n_kept = done = tokens = 0
    t0 = time.perf_counter()
    while n_kept < a.n and done < a.max_candidates:
        batch = generate(llm, tok, prefix, a, done, min(a.batch, a.max_candidates - done))
        tokens += sum(b[3] for b in batch)  # the generation's cost, every candidate of the batch
        for i, text, why, _ in batch:
            if n_kept == a.n:
                break  # the rest of the batch is not looked at: a rerun with a larger --n keeps these first ones
            done = i + 1
            if keep(text, why):
                cat = CATEGORY[language(text)]
                kept.setdefault(cat, []).append({"question_id": f"self-{a.seed}-{i}", "category": cat, "turns": [text]})
                n_kept += 1
        print(f"[self_prompts] {done} candidates, {n_kept} kept", file=sys.stderr)
    secs = time.perf_counter() - t0
    if n_kept == 0:
        print(f"error: none of {done} candidates passed the filters: {dict(keep.reasons)}", file=sys.stderr)
        return 1
    if n_kept < a.n:
        print(f"note: {a.n} asked, {n_kept} kept from {done} candidates (--max-candidates)", file=sys.stderr)
    write_checked(a.out, kept)
    stats = {"model": a.model, "candidates": done, "kept": n_kept, "per_category": {c: len(v) for c, v in kept.items()},
             "filters": dict(keep.reasons), "generated_tokens": tokens,
             "seconds": round(secs, 1),
             "sampling": {"temperature": a.temperature, "top_p": a.top_p, "max_tokens": a.max_tokens, "seed": a.seed},
             "openers": a.openers,
             "pre_query": prefix}
    atomic_write(a.out.with_name(a.out.name + ".stats.json"), json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    print(f"{a.out}: {n_kept} prompts " + json.dumps(stats["per_category"]) + f" from {done} candidates in {secs:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
