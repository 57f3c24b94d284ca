"""How much of a model's held-out answers its draft maps can draft at all: a token outside the request's map is a
certain miss at that draft position, whatever the head predicts.

    python -m benchmarks.map_coverage --tokenizer MODEL_DIR --data eval.jsonl \
        --maps shipped=EN.pt,ZH.pt --maps rebuilt=EN2.pt,ZH2.pt --out benchmarks/results/map_coverage

Each conversation's map is chosen as served, by the serving code's ``DraftVocabConfig`` (its map loader and checks,
language detector, threshold and default) from its first user turn. Counts every assistant token, grouped by the record's
``source`` (the prompt file) and ``category``. Writes results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from training.files import atomic_write, read_jsonl
from vllm_fastmtp.draft_vocab import DraftVocabConfig


def _group(rec: dict) -> str:
    source = str(rec.get("source", "")).split(".")[0]
    return f"{source}/{rec.get('category', '')}" if source else str(rec.get("category", "all"))


def measure(tokenizer, data: Path, maps: dict[str, dict[str, Path]], vocab_size: int) -> dict:
    """{"tokens": {group: n}, "covered": {name: {group: n}}} over every assistant turn of ``data``; each set of maps
    is loaded and chosen from by the serving code itself (``DraftVocabConfig``)."""
    configs, members, detectors = {}, {}, {}
    for name, pair in maps.items():
        cfg = configs[name] = DraftVocabConfig.parse({"maps": {lang: str(p) for lang, p in pair.items()}})
        ids, detectors[name] = cfg.load(tokenizer, vocab_size)
        members[name] = {lang: torch.zeros(vocab_size, dtype=torch.bool).index_fill_(0, m, True)
                         for lang, m in ids.items()}
    tokens, covered = Counter(), {name: Counter() for name in maps}
    for n, rec in read_jsonl(data):
        turns = rec.get("messages")
        prompt = next((m.get("content") for m in turns or () if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(prompt, str):
            raise ValueError(f"{data}:{n}: expected a chat record with 'messages' and a user turn")
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        langs = {name: cfg.language_for(detectors[name], prompt_ids) for name, cfg in configs.items()}
        group = _group(rec)
        for m in turns:
            if m.get("role") != "assistant":
                continue
            ids = torch.tensor(tokenizer(m["content"], add_special_tokens=False)["input_ids"], dtype=torch.long)
            tokens[group] += len(ids)
            for name in maps:
                covered[name][group] += int(members[name][langs[name]][ids].sum())
    return {"tokens": dict(tokens), "covered": {k: dict(v) for k, v in covered.items()}}


def table(res: dict) -> str:
    names = list(res["covered"])
    lines = ["| prompts / category | answer tokens | " + " | ".join(names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    groups = sorted(res["tokens"])
    total = sum(res["tokens"].values())
    for g in groups + ["all"]:
        n = total if g == "all" else res["tokens"][g]
        cells = []
        for name in names:
            c = sum(res["covered"][name].values()) if g == "all" else res["covered"][name].get(g, 0)
            cells.append(f"{100 * c / max(n, 1):.2f} %")
        label = "**all**" if g == "all" else g
        lines.append(f"| {label} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_maps(specs: list[str]) -> dict[str, dict[str, Path]]:
    out = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        parts = paths.split(",")
        if not sep or not name or len(parts) != 2 or not all(parts):
            raise SystemExit(f"--maps {spec!r}: expected NAME=EN_MAP,ZH_MAP")
        for p in parts:
            if not Path(p).is_file():
                raise SystemExit(f"--maps {spec!r}: no such map file: {p}")
        out[name] = {"en": Path(parts[0]), "zh": Path(parts[1])}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", required=True, help="model directory (its tokenizer)")
    ap.add_argument("--data", required=True, type=Path, help="chat JSONL (held-out answers)")
    ap.add_argument("--maps", action="append", required=True, help="NAME=EN_MAP,ZH_MAP (repeatable)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    maps = parse_maps(args.maps)
    if not args.data.is_file():
        raise SystemExit(f"--data: no such file: {args.data}")
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    vocab_size = AutoConfig.from_pretrained(args.tokenizer).vocab_size
    res = measure(tok, args.data, maps, vocab_size)
    res.update(data=str(args.data), maps={k: {l: str(p) for l, p in v.items()} for k, v in maps.items()})
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "results.json", json.dumps(res, indent=2) + "\n")
    md = f"# Held-out coverage of the draft maps: `{args.data}`\n\nShare of assistant tokens inside the map the " \
         f"request is served with (language of its first user turn).\n\n{table(res)}\n"
    atomic_write(args.out / "results.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
