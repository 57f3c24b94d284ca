"""Build a draft vocabulary map: count a tokenizer's tokens over text, keep the most frequent ids.

    python -m vocab_maps.build --tokenizer qwen2 --language en --size 32k \\
        --input corpus.txt --input distilled.jsonl --out vocab_maps/qwen2-en-32k.pt

Writes the FR-Spec/SGLang list (``torch.save`` of ids, descending frequency) and a JSON sidecar
(tokenizer fingerprint, language, sources, counts, coverage). ``--size`` may list several sizes and
``--out`` then needs ``{size}``; one counting pass serves all of them. ``--from-map`` instead converts an
existing map (e.g. an EAGLE-3 ``d2t`` file) into this format with a sidecar.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from training.cli import run_command

from .counting import FORMATS, Counter, check_source
from .format import VocabMapError, check_writable, load_vocab_map, save_map, tokenizer_fingerprint

COVERAGE_SIZES = (4096, 8192, 16384, 32768, 65536)


def parse_size(text: str | int) -> int:
    """``"32k"`` -> 32768, ``"1000"`` -> 1000."""
    if isinstance(text, int):
        return text
    t = str(text).strip().lower()
    try:
        n = int(t[:-1]) * 1024 if t.endswith("k") else int(t)
    except ValueError:
        raise VocabMapError(f"size {text!r}: expected an integer or NNk (e.g. 8k, 16k, 32k, 64k)") from None
    if n <= 0:
        raise VocabMapError(f"size {text!r}: must be positive")
    return n


def size_label(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def load_tokenizer(spec: str, cache_dir: str | None = None):
    """``qwen2`` -> the offline Qwen2/MiMo tokenizer; anything else -> ``AutoTokenizer.from_pretrained``."""
    if spec.lower() in ("qwen2", "mimo"):
        from .qwen2_tokenizer import qwen2_tokenizer

        return qwen2_tokenizer(cache_dir)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise VocabMapError(f"--tokenizer {spec!r}: cannot load a tokenizer from it ({str(e).splitlines()[0]})") from e


def default_always_include(tok) -> list[int]:
    """End-of-turn ids the draft must be able to propose: eos and the chat-end markers, where defined."""
    ids = []
    if isinstance(tok.eos_token_id, int):
        ids.append(tok.eos_token_id)
    added = tok.get_added_vocab()  # only real special tokens: Qwen2 also has '</s>' as an ordinary BPE token
    for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"):
        if t in added:
            ids.append(added[t])
    return list(dict.fromkeys(ids))


def parse_always(values: list[str], tok, vocab_size: int) -> list[int]:
    vocab = tok.get_vocab()
    out = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            if item.lstrip("-").isdigit():
                i = int(item)
            elif item in vocab:
                i = vocab[item]
            else:
                raise VocabMapError(f"--always-include {item!r}: neither an id nor a token of the tokenizer")
            if not 0 <= i < vocab_size:
                raise VocabMapError(f"--always-include {item!r}: id {i} outside [0, {vocab_size})")
            out.append(i)
    return list(dict.fromkeys(out))


def select_ids(counts: np.ndarray, size: int, always: list[int]) -> list[int]:
    """Top ``size`` ids by count (ties: lower id first); ``always`` ids are forced in at the tail's expense."""
    order = np.lexsort((np.arange(counts.size), -counts))
    order = [int(i) for i in order[counts[order] > 0]]
    forced = list(dict.fromkeys(always))[:size]
    fset = set(forced)
    free = [i for i in order if i not in fset][: size - len(fset)]
    chosen = set(free) | fset
    ranked = [i for i in order if i in chosen]
    seen = set(ranked)
    return ranked + [i for i in forced if i not in seen]  # forced ids never seen in the text go last


def coverage(counts: np.ndarray, ids: list[int]) -> float:
    total = counts.sum()
    return float(counts[ids].sum() / total) if total > 0 else 0.0


def build(args: argparse.Namespace) -> list[Path]:
    sizes = [parse_size(s) for s in args.size.split(",")]
    if len(sizes) > 1 and "{size}" not in args.out:
        raise VocabMapError("several --size values need '{size}' in --out (e.g. vocab_maps/qwen2-en-{size}.pt)")
    outs = [Path(args.out.replace("{size}", size_label(n))) for n in sizes]
    for o in outs:
        check_writable(o, force=args.force)
    if args.weight and len(args.weight) != len(args.input):
        raise VocabMapError(f"got {len(args.weight)} --weight values for {len(args.input)} --input paths")
    if args.weight and any(w <= 0 for w in args.weight):
        raise VocabMapError("--weight values must be positive")
    if not args.input and not args.from_map:
        raise VocabMapError("nothing to count: give --input (or --from-map to convert an existing map)")
    formats = [check_source(Path(p), args.format, args.glob) for p in args.input]

    tok = load_tokenizer(args.tokenizer, args.tokenizer_cache)
    vocab_size = args.vocab_size or len(tok)
    if vocab_size < len(tok):
        raise VocabMapError(f"--vocab-size {vocab_size} is smaller than the tokenizer's {len(tok)} tokens")
    for n in sizes:
        if n > vocab_size:
            raise VocabMapError(f"--size {size_label(n)} exceeds the vocabulary ({vocab_size} ids)")
    always = parse_always(args.always_include, tok, vocab_size) if args.always_include else default_always_include(tok)
    tok_meta = {
        "name": args.tokenizer,
        "fingerprint": tokenizer_fingerprint(tok),
        "vocab_size": len(tok),
        "eos_token_id": tok.eos_token_id,
    }

    if args.from_map:
        ids = load_vocab_map(args.from_map, vocab_size=vocab_size).tolist()
        meta = {"language": args.language, "tokenizer": tok_meta, "converted_from": str(args.from_map), "note": args.note}
        return [save_map(outs[0], ids, {k: v for k, v in meta.items() if v is not None}, vocab_size=vocab_size)]

    counter = Counter(tok, vocab_size)
    total = np.zeros(vocab_size, dtype=np.float64)
    source_stats = []
    roles = tuple(r.strip() for r in args.roles.split(","))
    for i, (p, fmt) in enumerate(zip(args.input, formats)):
        t0 = time.time()
        counts, stats = counter.count_source(Path(p), fmt, roles=roles, glob=args.glob, max_chars=args.max_chars)
        if counts.sum() == 0:
            raise VocabMapError(f"input {p}: no tokens counted (wrong --roles or --format?)")
        if args.weight:
            stats.weight = args.weight[i]
            counts = counts / counts.sum() * args.weight[i]  # weight = the source's share of all tokens
        total += counts
        source_stats.append(stats.as_dict())
        print(f"[vocab_maps.build] {p}: {stats.tokens} tokens, {stats.chars} chars, {time.time() - t0:.1f}s", file=sys.stderr)

    written = []
    distinct = int((total > 0).sum())
    for n, out in zip(sizes, outs):
        ids = select_ids(total, n, always)
        meta = {
            "language": args.language,
            "size": n,
            "tokenizer": tok_meta,
            "always_include": always,
            "roles": list(roles),
            "sources": source_stats,
            "counts": {
                "tokens": int(sum(s["tokens"] for s in source_stats)),
                "distinct_ids": distinct,
                "weighted": bool(args.weight),
                "coverage": round(coverage(total, ids), 6),
                "coverage_at_size": {size_label(k): round(coverage(total, select_ids(total, k, [])), 6) for k in COVERAGE_SIZES},
            },
            "note": args.note,
            "command": "python -m vocab_maps.build " + " ".join(args.argv) if args.record_command and getattr(args, "argv", None) else None,
        }
        if len(ids) < n:
            meta["counts"]["short_by"] = n - len(ids)  # fewer distinct tokens seen than requested
        written.append(save_map(out, ids, {k: v for k, v in meta.items() if v is not None}, vocab_size=vocab_size))
        print(f"[vocab_maps.build] wrote {out} ({len(ids)} ids, coverage {meta['counts']['coverage']:.4f})", file=sys.stderr)
    return written


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vocab_maps.build", description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="'qwen2' (offline Qwen2/MiMo tokenizer) or a tokenizer/model directory")
    p.add_argument("--tokenizer-cache", help="directory to save/reuse the converted qwen2 tokenizer (faster reruns)")
    p.add_argument("--input", action="append", default=[], help="text file, JSONL (messages/text), TSV word list, or a directory; repeatable")
    p.add_argument("--weight", action="append", type=float, help="per --input share of all tokens (one per input)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (auto: by extension)")
    p.add_argument("--glob", default="*", help="files to read inside directory inputs (e.g. '*.py')")
    p.add_argument("--roles", default="assistant", help="chat roles to count in JSONL messages (comma-separated)")
    p.add_argument("--max-chars", type=int, help="stop reading each input after this many characters")
    p.add_argument("--language", required=True, help="language tag stored in the sidecar (en, zh, ...)")
    p.add_argument("--size", required=True, help="number of ids: 8k, 16k, 32k, 64k, an integer, or a comma list")
    p.add_argument("--always-include", action="append", help="ids or token strings always kept (default: eos and chat-end tokens)")
    p.add_argument("--vocab-size", type=int, help="model vocab size if larger than the tokenizer's (MiMo: 151680)")
    p.add_argument("--from-map", help="convert this map (FR-Spec list, tensor, or EAGLE-3 d2t) instead of counting")
    p.add_argument("--out", required=True, help="output .pt (FR-Spec list) or .safetensors (EAGLE-3 d2t); may contain {size}")
    p.add_argument("--note", help="free text stored in the sidecar (e.g. where the sources came from)")
    p.add_argument("--no-record-command", dest="record_command", action="store_false")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    return run_command(lambda: build(args), VocabMapError)


if __name__ == "__main__":
    sys.exit(main())
