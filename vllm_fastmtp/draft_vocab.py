"""Language-aware pruned draft vocabulary (FR-Spec style) as the drafter applies it.

The draft head scores only a high-frequency sub-vocabulary per language; verification keeps the full
vocabulary, so output is unchanged. The map format lives in ``vocab_maps.format`` and language detection in
``vocab_maps.language``; this module holds the serving configuration and the pruned head, and imports no vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from vllm_fastmtp.confidence import top_token
from vocab_maps.format import VocabMapError, load_vocab_map, tokenizer_fingerprint, validate_ids
from vocab_maps.language import LanguageDetector


class PrunedDraftHead:
    """The shared lm_head restricted per language: draft logits cost |map| rows instead of the full vocabulary.

    ``maps[lang] = None`` keeps the full vocabulary for that language. Returned ids are full-vocabulary ids.
    ``linear(rows)`` prepares ``x -> x @ rows.T`` once per map: the serving engine passes
    `integration.linear.draft_linear` (on CPU vLLM's prepacked kernel for bf16/fp16 maps; for fp32 maps whichever
    of it and ``F.linear`` it measures faster); the default is `plain_linear`. A full-vocabulary language never
    gets a prepared copy of the lm_head (on MiMo-7B that copy alone is ~1.2 GB in bf16): it is scored by
    ``full(hidden)`` (the serving engine passes the model's own ``compute_logits``, whose lm_head vLLM has already
    prepared), else by a matmul over the weight.
    ``dtype``: the format the map rows are kept and scored in (default: the lm_head's). A draft is only a guess
    that verification checks over the full vocabulary in the model's own precision, so scoring a map in bf16
    under an fp32 model halves the bytes a pick reads and cannot change any output (`resolve_pick_dtype`).
    """

    def __init__(
        self,
        lm_head_weight: torch.Tensor,
        maps: Mapping[str, torch.Tensor | None],
        *,
        vocab_size: int | None = None,
        linear: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] | None = None,
        full: Callable[[torch.Tensor], torch.Tensor] | None = None,
        dtype: torch.dtype | None = None,
    ):
        if lm_head_weight.dim() != 2:
            raise ValueError(f"lm_head weight must be [V, H], got shape {tuple(lm_head_weight.shape)}")
        if not maps:
            raise ValueError("PrunedDraftHead needs at least one language map (use None for the full vocabulary)")
        self.vocab_size = int(vocab_size or lm_head_weight.shape[0])
        if self.vocab_size > lm_head_weight.shape[0]:
            raise ValueError(f"vocab_size {self.vocab_size} exceeds the lm_head's {lm_head_weight.shape[0]} rows")
        self.dtype = dtype or lm_head_weight.dtype  # the maps' rows
        model_dtype = lm_head_weight.dtype
        linear = linear or plain_linear
        full_vocab = lm_head_weight[: self.vocab_size]  # a view: no copy, scored in the model's own dtype
        score_full = plain_linear(full_vocab) if full is None else (lambda x: full(x)[..., : self.vocab_size])
        self.ids: dict[str, torch.Tensor | None] = {}
        self.kernels: dict[str, str] = {}  # lang -> the kernel its map's rows are scored with, where ``linear`` says
        self._score: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        for lang, ids in maps.items():
            if ids is None:
                self.ids[lang] = None
                self._score[lang] = lambda x, f=score_full: f(x.to(model_dtype))
                continue
            ids = torch.as_tensor(ids, dtype=torch.long)
            validate_ids(ids, vocab_size=self.vocab_size, where=f"map {lang!r}")
            ids = ids.to(lm_head_weight.device)
            self.ids[lang] = ids
            score = linear(lm_head_weight.index_select(0, ids).to(self.dtype).contiguous())
            if getattr(score, "kernel", None):
                self.kernels[lang] = score.kernel
            self._score[lang] = lambda x, f=score: f(x.to(self.dtype))

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
        return self._score[lang](hidden)

    def argmax(self, hidden: torch.Tensor, langs: Sequence[str]) -> torch.Tensor:
        """Greedy draft tokens (full-vocabulary ids), each row scored only over its language's map."""
        return self._select(hidden, langs, lambda logits: (_argmax(logits), None))[0]

    def pick(self, hidden: torch.Tensor, langs: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy draft tokens and the head's probability for each (softmax over the row's map, float32): what
        draft-confidence stopping (`vllm_fastmtp.confidence`) weighs."""
        return self._select(hidden, langs, top_token)

    def _select(self, hidden: torch.Tensor, langs: Sequence[str], choose) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``choose(logits) -> (local ids, probabilities or None)`` per row over its language's map, ids mapped
        back to the full vocabulary."""
        if langs and len(langs) == hidden.shape[0] and langs[0] in self.ids and langs.count(langs[0]) == len(langs):
            # the common case (batch 1, or one language): no row groups, no gather/scatter, nothing allocated
            local, probs = choose(self.sub_logits(hidden, langs[0]))
            ids = self.ids[langs[0]]
            return (local if ids is None else ids[local]), probs
        groups = self._groups(langs, hidden.shape[0])
        out = torch.empty(hidden.shape[0], dtype=torch.long, device=hidden.device)
        out_probs = None
        for lang, rows in groups.items():
            rows = rows.to(hidden.device)
            local, probs = choose(self.sub_logits(hidden.index_select(0, rows), lang))
            ids = self.ids[lang]
            out[rows] = local if ids is None else ids[local]
            if probs is not None:
                if out_probs is None:
                    out_probs = torch.empty(hidden.shape[0], dtype=probs.dtype, device=hidden.device)
                out_probs[rows] = probs
        return out, out_probs

    def describe(self) -> str:
        """``en: 32768 ids (vllm kernel), zh: full; map rows in bfloat16`` for the start-up log."""
        def one(lang: str, ids: torch.Tensor | None) -> str:
            if ids is None:
                return f"{lang}: full"
            kernel = f" ({self.kernels[lang]} kernel)" if lang in self.kernels else ""
            return f"{lang}: {ids.numel()} ids{kernel}"

        maps = ", ".join(one(lang, ids) for lang, ids in self.ids.items())
        return f"{maps}; map rows in {str(self.dtype).removeprefix('torch.')}"


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """Row argmax; on CPU bf16/fp16 logits are widened first (exact, same ids), because torch's CPU argmax over
    bf16 is ~4x slower than the cast plus an fp32 argmax (27 against 7 us for 8,192 ids on this machine)."""
    if logits.device.type == "cpu" and logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    return logits.argmax(dim=-1)


PICK_DTYPES = ("auto", "model", "bfloat16", "float16", "float32")
# the kernel a map's rows are scored with on CPU (`integration.linear.draft_linear`; this module imports no vLLM)
PICK_KERNELS = ("auto", "vllm", "torch")


def resolve_pick_dtype(choice: str, model_dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """The format a map's rows are scored in. "auto": bf16 for an fp32 model on a CPU that computes bf16 natively
    (half the bytes per pick, and vLLM's CPU kernel is faster in bf16: benchmarks/results/pick_kernel_h576.md),
    else the model's dtype; "model": always the model's; or an explicit dtype name."""
    if choice not in PICK_DTYPES:
        raise ValueError(f"pick_dtype must be one of {PICK_DTYPES}, got {choice!r}")
    if choice == "model":
        return model_dtype
    if choice != "auto":
        return getattr(torch, choice)
    from vllm_fastmtp.precision import bf16_native

    on_cpu = torch.device(device).type == "cpu"
    return torch.bfloat16 if model_dtype == torch.float32 and on_cpu and bf16_native("cpu") else model_dtype


def plain_linear(rows: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ rows.T`` with torch's matmul (``F.linear``), the rows as given."""
    return lambda x: torch.nn.functional.linear(x, rows)


@dataclass(frozen=True)
class DraftVocabConfig:
    """``speculative_config["draft_vocab"]``: which map per language, and how to pick the language."""

    maps: dict[str, str | None] = field(default_factory=dict)
    default: str = "en"
    zh_threshold: float = 0.1
    pick_dtype: str = "auto"
    pick_kernel: str = "auto"

    KEYS = ("maps", "default", "zh_threshold", "pick_dtype", "pick_kernel")

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
        pick_dtype = raw.get("pick_dtype", "auto")
        if pick_dtype not in PICK_DTYPES:
            raise VocabMapError(f"draft_vocab.pick_dtype: expected one of {list(PICK_DTYPES)}, got {pick_dtype!r}")
        pick_kernel = raw.get("pick_kernel", "auto")
        if pick_kernel not in PICK_KERNELS:
            raise VocabMapError(f"draft_vocab.pick_kernel: expected one of {list(PICK_KERNELS)}, got {pick_kernel!r}")
        return cls(maps=dict(maps), default=default, zh_threshold=float(thr), pick_dtype=pick_dtype,
                   pick_kernel=pick_kernel)

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
