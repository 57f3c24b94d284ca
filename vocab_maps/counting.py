"""Token frequencies from text sources: plain text, chat JSONL (incl. ``training.distill`` output), word lists.

For chat data only the roles the draft must produce are counted (assistant replies by default): the
draft head never proposes the user's tokens, so counting them would spend map slots on the wrong text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from training.files import open_text, read_jsonl

from .format import VocabMapError

FORMATS = ("auto", "text", "jsonl", "freq")
CHUNK_CHARS = 200_000
_MEMO: dict[tuple, tuple[np.ndarray, "SourceStats"]] = {}
BATCH = 64


@dataclass
class SourceStats:
    path: str
    format: str
    weight: float | None = None
    documents: int = 0
    chars: int = 0
    tokens: int = 0
    skipped_files: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if v not in (None, [])}
        return d


def detect_format(p: Path) -> str:
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith((".tsv", ".freq")):
        return "freq"
    return "text"


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _jsonl_texts(p: Path, roles: tuple[str, ...], stats: SourceStats) -> Iterator[str]:
    for lineno, obj in read_jsonl(p, VocabMapError):
        if "messages" in obj:
            msgs = obj["messages"]
            if not isinstance(msgs, list):
                raise VocabMapError(f"{p}:{lineno}: 'messages' must be a list of {{role, content}} objects")
            for m in msgs:
                if isinstance(m, dict) and m.get("role") in roles:
                    text = _message_text(m.get("content"))
                    if text:
                        stats.documents += 1
                        yield text
        elif isinstance(obj.get("text"), str):
            stats.documents += 1
            yield obj["text"]
        else:
            raise VocabMapError(f"{p}:{lineno}: expected a 'messages' list or a 'text' field, found keys {sorted(obj)}")


def _text_chunks(p: Path, stats: SourceStats) -> Iterator[str]:
    """Chunks cut at line ends, so a cut never splits a word."""
    try:
        with open_text(p) as f:
            buf: list[str] = []
            size = 0
            for line in f:
                buf.append(line)
                size += len(line)
                if size >= CHUNK_CHARS:
                    yield "".join(buf)
                    buf, size = [], 0
            if buf:
                yield "".join(buf)
        stats.documents += 1
    except UnicodeDecodeError:
        stats.skipped_files += 1  # binary or non-UTF-8 file inside a directory


def _files(p: Path, glob: str) -> list[Path]:
    if p.is_dir():
        return sorted(q for q in p.rglob(glob) if q.is_file())
    return [p]


def check_source(p: Path, fmt: str, glob: str) -> str:
    """Fail before tokenizing anything: missing paths, empty directories, unreadable first lines."""
    if not p.exists():
        raise VocabMapError(f"input {p}: no such file or directory")
    files = _files(p, glob)
    if not files:
        raise VocabMapError(f"input {p}: no files match --glob {glob!r}")
    fmt = detect_format(files[0]) if fmt == "auto" else fmt
    if fmt in ("jsonl", "freq"):
        for q in files[:3]:
            with open_text(q) as f:
                first = next((ln for ln in f if ln.strip()), "")
            if fmt == "jsonl":
                try:
                    json.loads(first)
                except json.JSONDecodeError as e:
                    raise VocabMapError(f"{q}:1: JSONL input whose first line is not JSON ({e.msg})") from None
            elif "\t" not in first:
                raise VocabMapError(f"{q}:1: word-frequency input needs 'text<TAB>count' lines")
    return fmt


class Counter:
    """Accumulates (optionally weighted) token counts over a fixed id range."""

    def __init__(self, tokenizer: Any, size: int):
        self.tok = tokenizer
        self.size = size

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=False)["input_ids"]

    def _bincount(self, batches: Iterator[list[str]], stats: SourceStats, max_chars: int | None) -> np.ndarray:
        counts = np.zeros(self.size, dtype=np.float64)
        for texts in batches:
            if max_chars is not None and stats.chars >= max_chars:
                stats.notes.append(f"stopped after {stats.chars} characters (--max-chars)")
                break
            stats.chars += sum(len(t) for t in texts)
            encoded = self._encode(texts)
            flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int64)
            counts += np.bincount(flat, minlength=self.size)[: self.size]
            stats.tokens += int(flat.size)
        return counts

    def count_source(
        self, p: Path, fmt: str, *, roles: tuple[str, ...], glob: str, max_chars: int | None
    ) -> tuple[np.ndarray, SourceStats]:
        """Counts for one input; memoised per process (the recipe counts the English sources twice)."""
        st = p.stat()
        key = (str(p.resolve()), st.st_mtime_ns, st.st_size, fmt, roles, glob, max_chars, id(self.tok), self.size)
        if key not in _MEMO:
            if len(_MEMO) >= 32:  # each entry is one vocab-sized array
                _MEMO.clear()
            _MEMO[key] = self._count_source(p, fmt, roles=roles, glob=glob, max_chars=max_chars)
        counts, stats = _MEMO[key]
        return counts.copy(), SourceStats(**{**stats.__dict__, "notes": list(stats.notes)})

    def _count_source(
        self, p: Path, fmt: str, *, roles: tuple[str, ...], glob: str, max_chars: int | None
    ) -> tuple[np.ndarray, SourceStats]:
        stats = SourceStats(path=str(p), format=fmt)
        if fmt == "freq":
            return self._count_freq(p, stats), stats

        def texts() -> Iterator[str]:
            for q in _files(p, glob):
                yield from (_jsonl_texts(q, roles, stats) if fmt == "jsonl" else _text_chunks(q, stats))

        counts = self._bincount(_batched(texts(), BATCH), stats, max_chars)
        if stats.skipped_files and p.is_file():
            raise VocabMapError(f"input {p}: not UTF-8 text")
        return counts, stats

    def _count_freq(self, p: Path, stats: SourceStats) -> np.ndarray:
        """``text<TAB>count`` lines: each text's tokens, weighted by its count (word-frequency tables)."""
        words, weights = [], []
        with open_text(p) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                text, _, num = line.rstrip("\n").rpartition("\t")
                try:
                    w = float(num)
                except ValueError:
                    raise VocabMapError(f"{p}:{lineno}: expected 'text<TAB>count', got {line[:60]!r}") from None
                if not text or w < 0:
                    raise VocabMapError(f"{p}:{lineno}: empty text or negative count")
                words.append(text)
                weights.append(w)
        counts = np.zeros(self.size, dtype=np.float64)
        for start in range(0, len(words), 4096):
            encoded = self._encode(words[start : start + 4096])
            flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int64)
            w = np.repeat(np.asarray(weights[start : start + 4096]), [len(ids) for ids in encoded])
            counts += np.bincount(flat, weights=w, minlength=self.size)[: self.size]
            stats.tokens += int(flat.size)
        stats.documents = len(words)
        stats.chars = sum(len(w) for w in words)
        return counts


def _batched(it: Iterator[str], n: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
