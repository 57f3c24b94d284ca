"""Language-aware pruned draft vocabulary (FR-Spec style) for serving.

The draft head scores only a high-frequency sub-vocabulary per language; verification keeps the full
vocabulary, so output is unchanged. This module holds everything serving needs and imports no vLLM:
loading and validating maps, telling a prompt's language cheaply, and the pruned head itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

FINGERPRINT_VERSION = "v1"
SIDECAR_SUFFIX = ".json"


class VocabMapError(ValueError):
    """A vocabulary map that cannot be used as given; the message names the file and the problem."""


# --------------------------------------------------------------------------------------------------
# Tokenizer fingerprint
# --------------------------------------------------------------------------------------------------


def _digest(items: Sequence[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for tok, idx in items:
        h.update(tok.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        h.update(str(idx).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """``v1-<regular>-<special>``: hashes of the regular and the added (special) token->id pairs.

    Two parts because the same BPE vocabulary ships with different special-token sets (Qwen2, Qwen2.5,
    MiMo); a map's ids stay meaningful when only the specials differ, so callers can compare the parts
    separately (see ``load_vocab_map``).
    """
    vocab: dict[str, int] = tokenizer.get_vocab()
    added = dict(tokenizer.get_added_vocab()) if hasattr(tokenizer, "get_added_vocab") else {}
    for tok in getattr(tokenizer, "all_special_tokens", []) or []:
        if tok in vocab:
            added.setdefault(tok, vocab[tok])
    regular = sorted(((t, i) for t, i in vocab.items() if t not in added), key=lambda x: x[1])
    special = sorted(added.items(), key=lambda x: x[1])
    return f"{FINGERPRINT_VERSION}-{_digest(regular)}-{_digest(special)}"


def _split_fingerprint(fp: str) -> tuple[str, str] | None:
    parts = fp.split("-")
    if len(parts) != 3 or parts[0] != FINGERPRINT_VERSION:
        return None
    return parts[1], parts[2]


# --------------------------------------------------------------------------------------------------
# Loading maps
# --------------------------------------------------------------------------------------------------


def sidecar_path(path: str | Path) -> Path:
    """``qwen2-en-32k.pt`` -> ``qwen2-en-32k.json``."""
    p = Path(path)
    return p.with_suffix(SIDECAR_SUFFIX) if p.suffix else p.with_name(p.name + SIDECAR_SUFFIX)


def _shipped_dir() -> Path:
    return Path(str(resources.files("vocab_maps")))


def shipped_maps() -> list[str]:
    """Short names of the maps installed with the package (``qwen2-en-32k``, ...)."""
    try:
        return sorted(p.stem for p in _shipped_dir().glob("*.pt"))
    except ModuleNotFoundError:
        return []


HUB_PREFIX = "hf://"


def _from_hub(spec: str) -> Path:
    """``hf://owner/repo/path/map.pt[@revision]`` -> a local copy (with its sidecar, if the repo has one)."""
    rest = spec[len(HUB_PREFIX) :]
    rest, _, revision = rest.partition("@")
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise VocabMapError(f"{spec!r}: expected hf://owner/repo/path/to/map.pt[@revision]")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download
    except ModuleNotFoundError:
        raise VocabMapError(f"{spec!r}: loading maps from the hub needs huggingface-hub (pip install huggingface-hub)") from None
    try:
        local = Path(hf_hub_download(repo_id, filename, revision=revision or None))
    except Exception as e:  # offline, missing repo/file, auth: all end the same way for the caller
        raise VocabMapError(
            f"{spec!r}: could not fetch {filename} from hub repo {repo_id} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}); offline? download it and pass a local path"
        ) from e
    try:
        hf_hub_download(repo_id, str(sidecar_path(filename)), revision=revision or None)
    except Exception:
        logger.info("%s: no sidecar in the repo; map checked without tokenizer metadata", spec)
    return local


def resolve_map_path(name_or_path: str | Path) -> Path:
    """A path on disk, a shipped map's short name (``"qwen2-en-32k"``) or ``hf://owner/repo/file.pt``."""
    if isinstance(name_or_path, str) and name_or_path.startswith(HUB_PREFIX):
        return _from_hub(name_or_path)
    p = Path(name_or_path)
    if p.exists():
        return p
    name = str(name_or_path)
    if "/" not in name and "\\" not in name:
        try:
            cand = _shipped_dir() / (name if name.endswith((".pt", ".safetensors")) else name + ".pt")
        except ModuleNotFoundError:
            cand = None
        if cand is not None and cand.exists():
            return cand
    raise VocabMapError(
        f"vocabulary map {name!r}: no such file, and not a shipped map name (shipped: {', '.join(shipped_maps()) or 'none'})"
    )


def _read_ids(p: Path) -> tuple[torch.Tensor, str]:
    """Raw ids from any supported format, and the format's name ('list', 'tensor', 'd2t')."""
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise VocabMapError(f"{p}: unreadable safetensors file ({e})") from e
        return _from_tensors(p, tensors)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise VocabMapError(
            f"{p}: refused to load: the file holds pickled objects beyond plain lists/tensors "
            f"(only weights_only-safe content is accepted): {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise VocabMapError(f"{p}: unreadable as a torch-saved map ({str(e).splitlines()[0]})") from e
    if isinstance(obj, Mapping):
        if not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise VocabMapError(f"{p}: a dict map must hold tensors (keys d2t/t2d/ids), got {sorted(obj)}")
        return _from_tensors(p, dict(obj))
    if isinstance(obj, torch.Tensor):
        return _check_int_tensor(p, obj, "tensor"), "tensor"
    if isinstance(obj, (list, tuple)):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in obj):
            bad = next(x for x in obj if not (isinstance(x, int) and not isinstance(x, bool)))
            raise VocabMapError(f"{p}: the list must hold integer token ids, found {type(bad).__name__} {bad!r}")
        return torch.tensor(list(obj), dtype=torch.long), "list"
    raise VocabMapError(f"{p}: expected a list of token ids, a tensor, or a d2t map; got {type(obj).__name__}")


def _check_int_tensor(p: Path, t: torch.Tensor, what: str) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise VocabMapError(f"{p}: {what} must be an integer tensor, got {t.dtype}")
    if t.dim() != 1:
        raise VocabMapError(f"{p}: {what} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.long)


def _from_tensors(p: Path, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, str]:
    if "d2t" in tensors:
        d2t = _check_int_tensor(p, tensors["d2t"], "d2t")
        # EAGLE-3: offsets over ascending draft ids, target id = draft id + d2t[draft id].
        return torch.arange(d2t.numel(), dtype=torch.long) + d2t, "d2t"
    for key in ("ids", "token_ids", "vocab"):
        if key in tensors:
            return _check_int_tensor(p, tensors[key], key), "tensor"
    raise VocabMapError(f"{p}: no 'd2t' or 'ids' tensor in the file (found {sorted(tensors)})")


def read_sidecar(path: str | Path) -> dict | None:
    """The map's metadata JSON, or None if there is none."""
    sc = sidecar_path(path)
    if not sc.exists():
        return None
    try:
        meta = json.loads(sc.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VocabMapError(f"{sc}: sidecar is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise VocabMapError(f"{sc}: sidecar must be a JSON object")
    return meta


def validate_ids(ids: torch.Tensor, *, vocab_size: int, where: str) -> None:
    """Raise ``VocabMapError`` for empty maps, out-of-range or duplicate ids."""
    if ids.numel() == 0:
        raise VocabMapError(f"{where}: the map is empty")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        raise VocabMapError(f"{where}: negative token id {lo}")
    if hi >= vocab_size:
        n_bad = int((ids >= vocab_size).sum())
        raise VocabMapError(f"{where}: token id {hi} >= vocab_size {vocab_size} ({n_bad} ids out of range)")
    uniq, counts = torch.unique(ids, return_counts=True)
    if uniq.numel() != ids.numel():
        dups = uniq[counts > 1][:5].tolist()
        raise VocabMapError(f"{where}: {ids.numel() - uniq.numel()} duplicate ids (e.g. {dups})")


def load_vocab_map(
    path: str | Path, *, vocab_size: int, fingerprint: str | None = None
) -> torch.LongTensor:
    """Load and validate a map; returns full-vocabulary ids (in file order: descending frequency).

    Accepts the FR-Spec/SGLang list (``torch.save(list_of_ids)``), a 1-D integer tensor, or an EAGLE-3
    ``d2t`` map (.pt dict or .safetensors). Loads with ``weights_only=True``: a file holding arbitrary
    pickled objects is refused. With ``fingerprint`` (from ``tokenizer_fingerprint``), a sidecar built for
    a different regular vocabulary is refused; differing special tokens only warn.
    """
    p = resolve_map_path(path)
    meta = read_sidecar(p)
    ids, _fmt = _read_ids(p)
    validate_ids(ids, vocab_size=vocab_size, where=str(p))
    if meta is not None:
        _check_sidecar(p, meta, ids, vocab_size=vocab_size, fingerprint=fingerprint)
    return ids


def _check_sidecar(p: Path, meta: dict, ids: torch.Tensor, *, vocab_size: int, fingerprint: str | None) -> None:
    sc = sidecar_path(p)
    tok = meta.get("tokenizer") or {}
    built_vs = tok.get("vocab_size")
    # The map's ids must exist in the serving vocabulary; a much smaller or larger tokenizer means another family.
    if isinstance(built_vs, int) and built_vs > vocab_size:
        raise VocabMapError(
            f"{sc}: map built for a tokenizer with {built_vs} tokens, but the model's vocab_size is {vocab_size}"
        )
    n = meta.get("num_ids")
    if isinstance(n, int) and n != ids.numel():
        raise VocabMapError(f"{sc}: sidecar says num_ids={n} but {p.name} holds {ids.numel()} ids (mismatched pair?)")
    built_fp = tok.get("fingerprint")
    if fingerprint is None or not built_fp:
        return
    a, b = _split_fingerprint(built_fp), _split_fingerprint(fingerprint)
    if a is None or b is None:
        if built_fp != fingerprint:
            raise VocabMapError(f"{sc}: tokenizer fingerprint {built_fp!r} does not match the model's {fingerprint!r}")
        return
    if a[0] != b[0]:
        raise VocabMapError(
            f"{sc}: map built for another tokenizer (regular-vocabulary fingerprint {a[0]} "
            f"from {tok.get('name', '?')!r}, the model's tokenizer has {b[0]})"
        )
    if a[1] != b[1]:
        logger.warning("%s: same regular vocabulary but different special tokens than the model's tokenizer", sc)


# --------------------------------------------------------------------------------------------------
# Language detection
# --------------------------------------------------------------------------------------------------

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


def _is_cjk_char(c: str) -> bool:
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
        if _is_cjk_char(ch):
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


# --------------------------------------------------------------------------------------------------
# The pruned head
# --------------------------------------------------------------------------------------------------


class PrunedDraftHead:
    """The shared lm_head restricted per language: draft logits cost |map| rows instead of the full vocabulary.

    ``maps[lang] = None`` keeps the full vocabulary for that language. Returned ids are full-vocabulary ids.
    """

    def __init__(
        self,
        lm_head_weight: torch.Tensor,
        maps: Mapping[str, torch.Tensor | None],
        *,
        vocab_size: int | None = None,
    ):
        if lm_head_weight.dim() != 2:
            raise ValueError(f"lm_head weight must be [V, H], got shape {tuple(lm_head_weight.shape)}")
        if not maps:
            raise ValueError("PrunedDraftHead needs at least one language map (use None for the full vocabulary)")
        self.vocab_size = int(vocab_size or lm_head_weight.shape[0])
        if self.vocab_size > lm_head_weight.shape[0]:
            raise ValueError(f"vocab_size {self.vocab_size} exceeds the lm_head's {lm_head_weight.shape[0]} rows")
        self.weight = lm_head_weight
        self.ids: dict[str, torch.Tensor | None] = {}
        self.sub_weight: dict[str, torch.Tensor] = {}
        for lang, ids in maps.items():
            if ids is None:
                self.ids[lang] = None
                self.sub_weight[lang] = lm_head_weight[: self.vocab_size]
                continue
            ids = torch.as_tensor(ids, dtype=torch.long)
            validate_ids(ids, vocab_size=self.vocab_size, where=f"map {lang!r}")
            ids = ids.to(lm_head_weight.device)
            self.ids[lang] = ids
            self.sub_weight[lang] = lm_head_weight.index_select(0, ids).contiguous()

    def _groups(self, langs: Sequence[str], n: int) -> dict[str, torch.Tensor]:
        if len(langs) != n:
            raise ValueError(f"got {len(langs)} languages for {n} hidden rows")
        groups: dict[str, list[int]] = {}
        for row, lang in enumerate(langs):
            if lang not in self.ids:
                raise KeyError(f"no draft vocabulary map for language {lang!r} (have {sorted(self.ids)})")
            groups.setdefault(lang, []).append(row)
        return {lang: torch.tensor(rows, dtype=torch.long) for lang, rows in groups.items()}

    def sub_logits(self, hidden: torch.Tensor, lang: str) -> torch.Tensor:
        """Logits over the map's ids only, column j <-> token ``ids[lang][j]``."""
        return hidden.to(self.weight.dtype) @ self.sub_weight[lang].T

    def argmax(self, hidden: torch.Tensor, langs: Sequence[str]) -> torch.Tensor:
        """Greedy draft tokens (full-vocabulary ids), each row scored only over its language's map."""
        groups = self._groups(langs, hidden.shape[0])
        if len(groups) == 1:  # the common case: no gather/scatter of rows
            (lang,) = groups
            local = self.sub_logits(hidden, lang).argmax(dim=-1)
            ids = self.ids[lang]
            return local if ids is None else ids[local]
        out = torch.empty(hidden.shape[0], dtype=torch.long, device=hidden.device)
        for lang, rows in groups.items():
            rows = rows.to(hidden.device)
            local = self.sub_logits(hidden.index_select(0, rows), lang).argmax(dim=-1)
            ids = self.ids[lang]
            out[rows] = local if ids is None else ids[local]
        return out

    def logits(self, hidden: torch.Tensor, langs: Sequence[str]) -> torch.Tensor:
        """Full-width logits [N, vocab_size], -inf outside each row's map, computing only the map's rows."""
        out = torch.full((hidden.shape[0], self.vocab_size), float("-inf"), dtype=self.weight.dtype, device=hidden.device)
        for lang, rows in self._groups(langs, hidden.shape[0]).items():
            rows = rows.to(hidden.device)
            sub = self.sub_logits(hidden.index_select(0, rows), lang)
            ids = self.ids[lang]
            if ids is None:
                out[rows] = sub
            else:
                out[rows.unsqueeze(1), ids.unsqueeze(0)] = sub
        return out

    def masked_logits(self, full_logits: torch.Tensor, langs: Sequence[str]) -> torch.Tensor:
        """Full logits with -inf outside each row's map, so sampling from them draws only map tokens."""
        out = full_logits.clone()
        for lang, rows in self._groups(langs, full_logits.shape[0]).items():
            ids = self.ids[lang]
            if ids is None:
                continue
            rows = rows.to(full_logits.device)
            drop = torch.ones(full_logits.shape[-1], dtype=torch.bool, device=full_logits.device)
            drop[ids] = False
            out[rows] = out[rows].masked_fill(drop, float("-inf"))
        return out


# --------------------------------------------------------------------------------------------------
# Serving configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class DraftVocabConfig:
    """``speculative_config["draft_vocab"]``: which map per language, and how to pick the language."""

    maps: dict[str, str | None] = field(default_factory=dict)
    default: str = "en"
    zh_threshold: float = 0.1

    KEYS = ("maps", "default", "zh_threshold")

    @classmethod
    def parse(cls, raw: Any) -> DraftVocabConfig | None:
        """None -> full vocabulary; a string -> one map for every language; a dict -> per-language maps."""
        if raw is None:
            return None
        if isinstance(raw, (str, Path)):
            return cls(maps={"en": str(raw)}, default="en")
        if not isinstance(raw, Mapping):
            raise VocabMapError(f"draft_vocab: expected null, a map name/path, or an object; got {type(raw).__name__}")
        unknown = set(raw) - set(cls.KEYS)
        if unknown:
            raise VocabMapError(f"draft_vocab: unknown keys {sorted(unknown)} (allowed: {list(cls.KEYS)})")
        maps = raw.get("maps")
        if not isinstance(maps, Mapping) or not maps:
            raise VocabMapError('draft_vocab.maps: expected a non-empty object {"lang": "name-or-path" or null}')
        for lang, m in maps.items():
            if m is not None and not isinstance(m, str):
                raise VocabMapError(f"draft_vocab.maps.{lang}: expected a map name/path or null, got {m!r}")
        default = raw.get("default", "en" if "en" in maps else next(iter(maps)))
        if default not in maps:
            raise VocabMapError(f"draft_vocab.default {default!r} is not one of the maps {sorted(maps)}")
        thr = raw.get("zh_threshold", 0.1)
        if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not 0.0 < float(thr) <= 1.0:
            raise VocabMapError(f"draft_vocab.zh_threshold: expected a number in (0, 1], got {thr!r}")
        return cls(maps=dict(maps), default=default, zh_threshold=float(thr))

    def load(self, tokenizer: Any, vocab_size: int) -> tuple[dict[str, torch.Tensor | None], LanguageDetector]:
        """Load every map (validated against the tokenizer) and the detector; fails before serving starts."""
        fp = tokenizer_fingerprint(tokenizer)
        maps = {
            lang: None if m is None else load_vocab_map(m, vocab_size=vocab_size, fingerprint=fp)
            for lang, m in self.maps.items()
        }
        detector = LanguageDetector(tokenizer, zh_threshold=self.zh_threshold, default=self.default, vocab_size=vocab_size)
        return maps, detector

    def language_for(self, detector: LanguageDetector, prompt_token_ids: Sequence[int]) -> str:
        """The detected language if it has a map, else the default."""
        lang = detector.detect(prompt_token_ids)
        return lang if lang in self.maps else self.default
