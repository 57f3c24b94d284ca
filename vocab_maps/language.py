"""Which language a prompt is in, told cheaply enough to run once per request.

A per-token script table (CJK / other / neutral) is computed once from the tokenizer's vocabulary at start-up; a
prompt then costs one array lookup. Byte-level BPE and SentencePiece byte-fallback tokens are decoded to bytes, so
tokens holding part of a UTF-8 character still count.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

NEUTRAL, OTHER, CJK = -1, 0, 1
_CJK_RANGES = (
    (0x2E80, 0x2FDF),  # radicals
    (0x3000, 0x303F),  # CJK punctuation
    (0x3040, 0x30FF),  # kana
    (0x3100, 0x31BF),  # bopomofo
    (0x3400, 0x4DBF),  # ext A
    (0x4E00, 0x9FFF),  # unified ideographs
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0xFF00, 0xFF60),  # full-width punctuation and forms (，！？)
    (0x20000, 0x3134F),  # ext B..G
)
# UTF-8 lead bytes whose 3-byte sequences are all CJK (U+3000..U+9FFF).
_CJK_LEADS = frozenset(range(0xE3, 0xEA))


def is_cjk_char(c: str) -> bool:
    """Whether a character lies in a CJK block (the test the serving language detector and prompt filters share)."""
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in _CJK_RANGES)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}
_SP_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _token_bytes(tok: str, byte_level: bool) -> bytes:
    if byte_level and all(c in _UNICODE_TO_BYTE for c in tok):
        return bytes(_UNICODE_TO_BYTE[c] for c in tok)
    m = _SP_BYTE.match(tok)
    if m:  # SentencePiece byte fallback
        return bytes([int(m.group(1), 16)])
    return tok.replace("\u2581", " ").encode("utf-8", "surrogatepass")


def classify_token_bytes(b: bytes) -> int:
    """CJK / OTHER / NEUTRAL for one token's bytes, tolerating partial UTF-8 sequences at either end."""
    i, n = 0, len(b)
    while i < n and 0x80 <= b[i] <= 0xBF:  # tail of a character begun in an earlier token
        i += 1
    seen_other = False
    while i < n:
        c = b[i]
        if c < 0x80:
            seen_other = True
            i += 1
            continue
        width = 2 if 0xC0 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF7 else 1
        chunk = b[i : i + width]
        if width == 1:  # stray continuation byte in the middle: malformed, ignore
            i += 1
            continue
        if len(chunk) < width:  # the character continues in the next token
            if width == 3 and c in _CJK_LEADS:
                return CJK
            return OTHER if seen_other else NEUTRAL
        try:
            ch = chunk.decode("utf-8")
        except UnicodeDecodeError:
            i += 1
            continue
        if is_cjk_char(ch):
            return CJK
        seen_other = True
        i += width
    return OTHER if seen_other else NEUTRAL


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    dec = getattr(backend, "decoder", None)
    if dec is not None and "ByteLevel" in repr(dec):
        return True
    # Fall back to the vocabulary itself: byte-level vocabularies spell the space byte as 'Ġ'.
    vocab = tokenizer.get_vocab()
    return "Ġ" in vocab and "Ġthe" in vocab if len(vocab) > 1000 else "Ġ" in vocab


def script_table(tokenizer: Any, size: int | None = None) -> np.ndarray:
    """Per token id: CJK (1), OTHER (0) or NEUTRAL (-1: special, continuation-only or unknown ids)."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    n = max(size or 0, max(vocab.values()) + 1)
    table = np.full(n, NEUTRAL, dtype=np.int8)
    byte_level = _is_byte_level(tokenizer)
    special = set(getattr(tokenizer, "get_added_vocab", dict)().values())
    for tok, idx in vocab.items():
        if idx in special:
            continue
        table[idx] = classify_token_bytes(_token_bytes(tok, byte_level))
    return table


class LanguageDetector:
    """Tells "zh" from the default language by the share of CJK tokens in a prompt.

    The per-token table is computed once at start-up, so a request costs one array lookup; tokens that
    carry no script (special tokens, bare UTF-8 continuation bytes) count for neither side.
    """

    def __init__(self, tokenizer: Any, *, zh_threshold: float = 0.1, default: str = "en", vocab_size: int | None = None):
        if not 0.0 < zh_threshold <= 1.0:
            raise ValueError(f"zh_threshold must be in (0, 1], got {zh_threshold}")
        self.zh_threshold = float(zh_threshold)
        self.default = default
        self.table = script_table(tokenizer, vocab_size)

    def cjk_share(self, prompt_token_ids: Sequence[int]) -> float:
        ids = np.asarray(prompt_token_ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < self.table.size)]
        cls = self.table[ids]
        cjk = int((cls == CJK).sum())
        counted = cjk + int((cls == OTHER).sum())
        return cjk / counted if counted else 0.0

    def detect(self, prompt_token_ids: Sequence[int]) -> str:
        return "zh" if self.cjk_share(prompt_token_ids) >= self.zh_threshold else self.default
