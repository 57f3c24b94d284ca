"""How much of a model's held-out answers its draft maps can draft at all: a token outside the request's map is a
certain miss at that draft position, whatever the head predicts.

    python -m benchmarks.map_coverage --tokenizer MODEL_DIR --data eval.jsonl \
        --maps shipped=EN.pt,ZH.pt --maps rebuilt=EN2.pt,ZH2.pt --out benchmarks/results/map_coverage

Each conversation's map is chosen as served: by the language of its first user turn (``LanguageDetector``, the
same table and threshold as ``DraftVocabConfig``). Counts every assistant token, grouped by the record's
``source`` (the prompt file) and ``category``. Writes results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from vocab_maps.format import load_vocab_map, tokenizer_fingerprint
from vocab_maps.language import LanguageDetector


def _group(rec: dict) -> str:
    source = str(rec.get("source", "")).split(".")[0]
    return f"{source}/{rec.get('category', '')}" if source else str(rec.get("category", "all"))


def measure(tokenizer, data: Path, maps: dict[str, dict[str, Path]], vocab_size: int) -> dict:
    """{"tokens": {group: n}, "covered": {name: {group: n}}} over every assistant turn of ``data``."""
    fp = tokenizer_fingerprint(tokenizer)
    members = {name: {lang: torch.zeros(vocab_size, dtype=torch.bool) for lang in pair} for name, pair in maps.items()}
    for name, pair in maps.items():
        for lang, path in pair.items():
            members[name][lang][load_vocab_map(path, vocab_size=vocab_size, fingerprint=fp)] = True
    detector = LanguageDetector(tokenizer, vocab_size=vocab_size)
    tokens, covered = Counter(), {name: Counter() for name in maps}
    with data.open() as f:
        for n, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
                turns = rec["messages"]
                prompt = next(m["content"] for m in turns if m["role"] == "user")
            except (json.JSONDecodeError, KeyError, TypeError, StopIteration) as e:
                raise ValueError(f"{data}:{n}: expected a chat record with 'messages' and a user turn ({e!r})") from None
            lang = detector.detect(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            group = _group(rec)
            for m in turns:
                if m["role"] != "assistant":
                    continue
                ids = torch.tensor(tokenizer(m["content"], add_special_tokens=False)["input_ids"], dtype=torch.long)
                tokens[group] += len(ids)
                for name in maps:
                    table = members[name].get(lang, members[name]["en"])
                    covered[name][group] += int(table[ids].sum())
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
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = f"# Held-out coverage of the draft maps: `{args.data}`\n\nShare of assistant tokens inside the map the " \
         f"request is served with (language of its first user turn).\n\n{table(res)}\n"
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
