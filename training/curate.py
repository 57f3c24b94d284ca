"""Clean, de-duplicate and mix self-distilled data, reporting what every step removed.

The FastMTP recipe filters the regenerated answers (truncated reasoning, excessive repetition, out-of-range
length), removes near-duplicates globally with MinHash, and mixes by TOKENS per category
(42% general, 18% math, 13% code, 27% Chinese: ``--mix paper``). Steps run in that order; the output
keeps the input order and is written atomically, so an existing file is never left half-written.

    python -m training.curate --in data.jsonl --out curated.jsonl --mix paper
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.files import atomic_write, read_jsonl

PAPER_MIX = {"general": 0.42, "math": 0.18, "code": 0.13, "chinese": 0.27}
INCOMPLETE_REASONS = ("length", "prompt_too_long")


class CurateError(ValueError):
    """Bad input or settings; the message names the file, line or flag."""


@dataclass
class Item:
    rec: dict
    where: str  # "file:line"
    source_file: str
    tokens: int  # training-sequence tokens, the unit of mixing

    @property
    def category(self) -> str:
        return self.rec["category"]

    @property
    def group(self) -> str:
        """Samples of one conversation (``#sK`` ids) are not duplicates of each other."""
        return self.rec["id"].split("#s")[0]


@dataclass
class StepReport:
    step: str
    kept: int
    dropped: int
    dropped_by_category: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- reading


def _require(rec: dict, where: str, key: str, kind, what: str):
    if key not in rec:
        raise CurateError(f"{where}: missing field '{key}' ({what})")
    if not isinstance(rec[key], kind):
        raise CurateError(f"{where}: field '{key}' must be {what}, got {type(rec[key]).__name__}")
    return rec[key]


def read_items(paths: list[str]) -> list[Item]:
    """Every record of every input, validated up front: a bad line fails before any output is written."""
    items: list[Item] = []
    for path in paths:
        if not os.path.isfile(path):
            raise CurateError(f"{path}: input file not found")
        for lineno, rec in read_jsonl(path, CurateError, whole_lines=True):
            where = f"{path}:{lineno}"
            _require(rec, where, "id", str, "a string")
            _require(rec, where, "category", str, "a string")
            msgs = _require(rec, where, "messages", list, "a list of {role, content}")
            for i, m in enumerate(msgs):
                if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                    raise CurateError(f"{where}: messages[{i}] must be an object with string 'role' and 'content'")
            comp = _require(rec, where, "completion_tokens", list, "a list of per-answer token counts")
            if len(comp) != sum(m["role"] == "assistant" for m in msgs):
                raise CurateError(f"{where}: {len(comp)} completion_tokens for {sum(m['role'] == 'assistant' for m in msgs)} assistant turns")
            tokens = _require(rec, where, "total_tokens", int, "an integer token count")
            items.append(Item(rec, where, path, tokens))
    return items


# ------------------------------------------------------------------------------------------- filters


def gram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of all character n-grams, vectorised: curation must keep up with 10^5-10^6 answers."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    m = len(cp) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    for j in range(n):  # polynomial hash, wrapping mod 2^64
        h = h * np.uint64(1099511628211) + cp[j : j + m]
    # splitmix64 finaliser: spreads the polynomial hash over all bits (MinHash takes the top 32).
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def repetition_ratio(text: str, n: int = 10) -> float:
    """Share of repeated character n-grams: ~0 for ordinary prose, near 1 for an answer stuck in a loop.

    Characters rather than words, so Chinese (no spaces) and code are measured the same way.
    """
    t = re.sub(r"\s+", " ", text).strip()
    total = len(t) - n + 1
    if total < 2 * n:
        return 0.0
    return 1.0 - len(np.unique(gram_hashes(t, n))) / total


def _answers(rec: dict) -> list[str]:
    return [m["content"] for m in rec["messages"] if m["role"] == "assistant"]


def _split(items: list[Item], name: str, drop_reason) -> tuple[list[Item], StepReport]:
    kept, reasons, by_cat = [], Counter(), Counter()
    for it in items:
        reason = drop_reason(it)
        if reason is None:
            kept.append(it)
        else:
            reasons[reason] += 1
            by_cat[it.category] += 1
    return kept, StepReport(name, len(kept), len(items) - len(kept), dict(by_cat), {"reasons": dict(reasons)} if reasons else {})


def filter_truncated(items: list[Item], keep_truncated: bool) -> tuple[list[Item], StepReport]:
    def reason(it: Item):
        if not _answers(it.rec):
            return "no_answer"
        finishes = it.rec.get("finish_reasons") or [it.rec.get("finish_reason")]
        if not keep_truncated and any(f in INCOMPLETE_REASONS for f in finishes):
            return "truncated"
        return None

    return _split(items, "truncated", reason)


def filter_repetition(items: list[Item], max_ratio: float, n: int) -> tuple[list[Item], StepReport]:
    def reason(it: Item):
        return "repetition" if any(repetition_ratio(a, n) > max_ratio for a in _answers(it.rec)) else None

    kept, rep = _split(items, "repetition", reason)
    rep.details.update({"max_ratio": max_ratio, "ngram_chars": n})
    return kept, rep


def filter_length(items: list[Item], min_tokens: int, max_tokens: int | None) -> tuple[list[Item], StepReport]:
    def reason(it: Item):
        for c in it.rec["completion_tokens"]:
            if c < min_tokens:
                return "too_short"
            if max_tokens is not None and c > max_tokens:
                return "too_long"
        return None

    kept, rep = _split(items, "length", reason)
    rep.details.update({"min_tokens": min_tokens, "max_tokens": max_tokens})
    return kept, rep


# ------------------------------------------------------------------------------------------- dedup


def dedup_text(rec: dict, on: str) -> str:
    roles = ("system", "user") if on == "prompt" else ("system", "user", "assistant")
    return "\n".join(m["content"] for m in rec["messages"] if m["role"] in roles)


def shingle_hashes(text: str, k: int = 5) -> np.ndarray:
    """Distinct 32-bit hashes of the character k-grams of the normalised text (whole text if shorter)."""
    t = re.sub(r"\s+", " ", text.lower()).strip()
    h = gram_hashes(t, min(k, max(len(t), 1)))
    return np.unique((h >> np.uint64(32)).astype(np.uint64))


class NearDuplicates:
    """MinHash LSH over the texts added so far (5-character shingles): LSH proposes candidates, the estimated
    Jaccard confirms them, which removes most LSH false positives."""

    def __init__(self, threshold: float, num_perm: int = 128, seed: int = 1):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.permutations = MinHash(num_perm=num_perm, seed=seed).permutations  # computed once, not per text
        self.signatures: list[np.ndarray] = []

    def minhash(self, text: str):
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=int, permutations=self.permutations,
                    scheme="affine32")
        m.update_batch(shingle_hashes(text))
        return m

    def matches(self, m) -> list[int]:
        """Indices (in the order added) of the texts ``m``'s estimated Jaccard to reaches the threshold."""
        sig = m.hashvalues.astype(np.uint32)
        return [k for k in self.lsh.query(m) if float(np.mean(self.signatures[k] == sig)) >= self.threshold]

    def add(self, m) -> None:
        self.lsh.insert(len(self.signatures), m)
        self.signatures.append(m.hashvalues.astype(np.uint32))


def minhash_dedup(
    items: list[Item], threshold: float, on: str = "prompt", num_perm: int = 128, seed: int = 1
) -> tuple[list[Item], StepReport]:
    """Drop later items whose MinHash Jaccard to a kept item of another group reaches ``threshold``, across all
    sources (``NearDuplicates``)."""
    near = NearDuplicates(threshold, num_perm, seed)
    kept: list[Item] = []
    by_cat: Counter = Counter()
    within = cross = 0
    examples = []
    for it in items:
        m = near.minhash(dedup_text(it.rec, on))
        dup_of = next((kept[k] for k in near.matches(m) if kept[k].group != it.group), None)
        if dup_of is None:
            near.add(m)
            kept.append(it)
            continue
        by_cat[it.category] += 1
        if dup_of.rec.get("source") == it.rec.get("source"):
            within += 1
        else:
            cross += 1
        if len(examples) < 5:
            examples.append({"dropped": it.rec["id"], "duplicate_of": dup_of.rec["id"]})
    rep = StepReport(
        "dedup", len(kept), len(items) - len(kept), dict(by_cat),
        {"threshold": threshold, "on": on, "num_perm": num_perm, "within_source": within, "cross_source": cross,
         "examples": examples},
    )
    return kept, rep


# ------------------------------------------------------------------------------------------- mixing


def parse_mix(spec: str) -> dict[str, float]:
    """``paper`` or ``cat=share,...``; shares must sum to 1 (±0.01) and are then normalised exactly."""
    if spec == "paper":
        return dict(PAPER_MIX)
    mix: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, val = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CurateError(f"--mix: {part!r} is not CATEGORY=SHARE")
        try:
            share = float(val)
        except ValueError:
            raise CurateError(f"--mix: share for {name!r} is not a number: {val!r}") from None
        if share <= 0:
            raise CurateError(f"--mix: share for {name!r} must be > 0, got {share}")
        if name in mix:
            raise CurateError(f"--mix: category {name!r} given twice")
        mix[name] = share
    total = sum(mix.values())
    if abs(total - 1.0) > 0.01:
        raise CurateError(f"--mix: shares sum to {total:.4f}, expected 1")
    return {k: v / total for k, v in mix.items()}


def mix_by_tokens(
    items: list[Item], mix: dict[str, float], total_tokens: int | None = None, seed: int = 0
) -> tuple[list[Item], StepReport]:
    """Pick per-category subsets whose token totals follow ``mix``.

    The scarcest category (relative to its share) is taken whole and sets the budget; the others are
    sampled at random without replacement up to their target, so the error per category is below the
    size of one item.
    """
    available = Counter()
    for it in items:
        available[it.category] += it.tokens
    missing = [c for c in mix if available[c] == 0]
    if missing:
        raise CurateError(
            f"--mix names categories with no data left after filtering: {', '.join(missing)} "
            f"(categories present: {', '.join(sorted(available)) or 'none'})"
        )
    limit_cat = min(mix, key=lambda c: available[c] / mix[c])
    budget = available[limit_cat] / mix[limit_cat]
    notes = {"limited_by": limit_cat}
    if total_tokens is not None:
        if total_tokens > budget:
            notes["requested_total_tokens_unreachable"] = total_tokens
        budget = min(budget, total_tokens)
    rng = random.Random(seed)
    chosen: set[int] = set()
    selected = Counter()
    for cat, share in mix.items():
        target = share * budget
        idx = [i for i, it in enumerate(items) if it.category == cat]
        rng.shuffle(idx)
        for i in idx:
            t = items[i].tokens
            if selected[cat] + t <= target + 1e-9:
                chosen.add(i)
                selected[cat] += t
    kept = [it for i, it in enumerate(items) if i in chosen]
    grand = sum(selected.values()) or 1
    per_cat = {
        cat: {
            "target_share": round(mix.get(cat, 0.0), 6),
            "achieved_share": round(selected[cat] / grand, 6),
            "available_tokens": available[cat],
            "selected_tokens": selected[cat],
            "records": sum(1 for it in kept if it.category == cat),
        }
        for cat in sorted(set(available) | set(mix))
    }
    dropped_cat = Counter(it.category for i, it in enumerate(items) if i not in chosen)
    notes.update(
        {
            "total_tokens": sum(selected.values()),
            "max_share_error": round(max(abs(v["achieved_share"] - v["target_share"]) for v in per_cat.values()), 6),
            "per_category": per_cat,
            "unmixed_categories_dropped": sorted(set(available) - set(mix)),
        }
    )
    return kept, StepReport("mix", len(kept), len(items) - len(kept), dict(dropped_cat), notes)


# ------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.curate", description=__doc__.splitlines()[0])
    p.add_argument("--in", dest="inputs", nargs="+", required=True, help="distill output JSONL file(s)")
    p.add_argument("--out", required=True, help="curated JSONL (written atomically)")
    p.add_argument("--report", default=None, help="report JSON (default: OUT.report.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--keep-truncated", action="store_true", help="keep answers that hit max tokens / max model length")
    p.add_argument("--max-repetition", type=float, default=0.5, help="drop answers with a larger share of repeated character n-grams (1 disables)")
    p.add_argument("--repetition-ngram", type=int, default=10, help="n-gram length in characters for --max-repetition")
    p.add_argument("--min-tokens", type=int, default=1, help="drop conversations with an answer shorter than this")
    p.add_argument("--max-tokens", type=int, default=None, help="drop conversations with an answer longer than this")
    p.add_argument("--dedup-threshold", type=float, default=0.8, help="MinHash Jaccard at which items count as duplicates")
    p.add_argument("--dedup-on", choices=("prompt", "conversation"), default="prompt", help="text compared for near-duplicates")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    p.add_argument("--no-dedup", action="store_true")
    p.add_argument("--mix", default=None, help="'paper' (general=0.42,math=0.18,code=0.13,chinese=0.27) or CAT=SHARE,...")
    p.add_argument("--mix-tolerance", type=float, default=0.02, help="max |achieved - target| share before failing")
    p.add_argument("--total-tokens", type=int, default=None, help="token budget of the mix (default: as much as the scarcest category allows)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mixing sample")
    return p


def validate(args: argparse.Namespace) -> dict[str, float] | None:
    if not 0.0 < args.dedup_threshold <= 1.0:
        raise CurateError(f"--dedup-threshold must be in (0, 1], got {args.dedup_threshold}")
    if not 0.0 <= args.max_repetition <= 1.0:
        raise CurateError(f"--max-repetition must be in [0, 1], got {args.max_repetition}")
    if args.repetition_ngram < 1:
        raise CurateError("--repetition-ngram must be >= 1")
    if args.max_tokens is not None and args.max_tokens < args.min_tokens:
        raise CurateError(f"--max-tokens {args.max_tokens} < --min-tokens {args.min_tokens}")
    out = Path(args.out)
    for path in args.inputs:
        if os.path.exists(path) and out.exists() and os.path.samefile(path, out):
            raise CurateError(f"--out {out} is also an input")
    if out.exists() and not args.overwrite:
        raise CurateError(f"--out {out} exists; pass --overwrite to replace it")
    return parse_mix(args.mix) if args.mix else None




def _write_records(path: str, items: list[Item]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it.rec, ensure_ascii=False) + "\n")


def curate(args: argparse.Namespace, mix: dict[str, float] | None) -> tuple[list[Item], list[StepReport]]:
    items = read_items(args.inputs)
    steps = [StepReport("read", len(items), 0, details={"per_category": dict(Counter(it.category for it in items))})]
    items, rep = filter_truncated(items, args.keep_truncated)
    steps.append(rep)
    items, rep = filter_repetition(items, args.max_repetition, args.repetition_ngram)
    steps.append(rep)
    items, rep = filter_length(items, args.min_tokens, args.max_tokens)
    steps.append(rep)
    if not args.no_dedup:
        items, rep = minhash_dedup(items, args.dedup_threshold, args.dedup_on, args.num_perm)
        steps.append(rep)
    if mix is not None:
        items, rep = mix_by_tokens(items, mix, args.total_tokens, args.seed)
        steps.append(rep)
    return items, steps


def format_steps(steps: list[StepReport]) -> str:
    lines = [f"{'step':<12}{'kept':>10}{'dropped':>10}  detail"]
    for s in steps:
        extra = s.details.get("reasons") or {k: s.details[k] for k in ("within_source", "cross_source") if k in s.details}
        lines.append(f"{s.step:<12}{s.kept:>10}{s.dropped:>10}  {json.dumps(extra) if extra else ''}")
    mix = next((s for s in steps if s.step == "mix"), None)
    if mix:
        lines.append(f"{'category':<12}{'target':>10}{'achieved':>10}{'tokens':>14}{'records':>10}")
        for cat, v in mix.details["per_category"].items():
            lines.append(
                f"{cat:<12}{v['target_share']:>10.3f}{v['achieved_share']:>10.3f}{v['selected_tokens']:>14}{v['records']:>10}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        mix = validate(args)
        items, steps = curate(args, mix)
    except CurateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report_path = Path(args.report) if args.report else out.with_name(out.name + ".report.json")
    report = {"inputs": args.inputs, "out": str(out), "steps": [s.__dict__ for s in steps]}
    print(format_steps(steps), file=sys.stderr)
    mix_step = next((s for s in steps if s.step == "mix"), None)
    if mix_step and mix_step.details["max_share_error"] > args.mix_tolerance:
        report["error"] = f"achieved shares miss the targets by {mix_step.details['max_share_error']:.4f} > --mix-tolerance {args.mix_tolerance}"
        atomic_write(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"error: {report['error']}; {out} not written (items are too large for the budget: add data or raise the tolerance)", file=sys.stderr)
        return 3
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: _write_records(tmp, items))
    atomic_write(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"[curate] {len(items)} conversations written to {out}; report in {report_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
