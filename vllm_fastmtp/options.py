"""The FastMTP part of `--speculative-config`, validated before vLLM builds anything.

vLLM's SpeculativeConfig rejects unknown keys, so the FastMTP-only keys are taken out here, checked, and carried to
the workers as one frozen `FastMTPOptions`, stored as its JSON-safe record on the draft model's hf_config (which is
pickled to every process, and which transformers serialises: a dataclass there breaks its to_json_string/repr).
Keeping this free of vLLM imports lets it be tested, and reused by the benchmarks, without an engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from vllm_fastmtp.confidence import check_threshold
from vllm_fastmtp.conventions import HIDDEN_STATE_CHOICES
from vllm_fastmtp.draft_vocab import DraftVocabConfig

METHOD = "fastmtp"
DEFAULT_NUM_SPECULATIVE_TOKENS = 3
MAX_NUM_SPECULATIVE_TOKENS = 7  # the paper sweeps K up to 7; speed peaks at 3
HF_CONFIG_ATTR = "fastmtp_serving"  # attribute on the draft hf_config that carries the resolved options
# Opt-in: where the request's own text holds its last 2-3 tokens earlier on (vLLM's ngram prompt lookup), what
# followed there can replace the head's drafts (vllm_fastmtp.lookup). "agree": only positions 2..K, and only when
# the head's first draft equals what follows the match; "prefer": every position, whenever there is a match.
PROMPT_LOOKUP_POLICIES = ("agree", "prefer")


class FastMTPConfigError(ValueError):
    """A `--speculative-config` for method "fastmtp" that cannot be served."""


@dataclass(frozen=True)
class FastMTPOptions:
    """The FastMTP options: as split from `--speculative-config`, then resolved against the engine config (every
    field set) and handed to the workers unchanged."""

    num_speculative_tokens: int = DEFAULT_NUM_SPECULATIVE_TOKENS
    hidden_state: str | None = None  # None until resolved: as recorded in the checkpoint (conventions.py)
    draft_vocab: DraftVocabConfig | None = None  # None: draft over the full vocabulary
    tokenizer: str | None = None  # the target's tokenizer (set when resolved): the maps' fingerprint check
    prompt_lookup: str | None = None  # None: drafts are the head's alone; else a PROMPT_LOOKUP_POLICIES key
    draft_confidence: float | None = None  # None: K drafts every step; else the threshold of `confidence.py`
    # eager CPU engines: the draft layers' norms and activation on the CPU build's C kernels (integration.cpu_kernels)
    cpu_c_kernels: bool = True

    # FastMTP-only keys accepted inside --speculative-config next to vLLM's own.
    KEYS = ("hidden_state", "draft_vocab", "prompt_lookup", "draft_confidence", "cpu_c_kernels")

    def to_record(self) -> dict:
        """The plain-dict form carried on the draft hf_config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> FastMTPOptions:
        dv = rec.get("draft_vocab")
        return cls(**{**rec, "draft_vocab": None if dv is None else DraftVocabConfig(**dv)})


def split_speculative_config(raw: Mapping[str, Any], vllm_keys: set[str]) -> tuple[dict, FastMTPOptions]:
    """Separate and validate the FastMTP keys of a fastmtp speculative config.

    Returns (the dict vLLM's SpeculativeConfig receives, the FastMTP options). K defaults to 3 here, so that an
    omitted `num_speculative_tokens` means the paper's K rather than vLLM's model-derived default.
    """
    raw = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(raw) - set(vllm_keys) - set(FastMTPOptions.KEYS))
    if unknown:
        raise FastMTPConfigError(
            f"speculative_config: unknown key(s) {unknown} for method 'fastmtp'. FastMTP keys: "
            f"{list(FastMTPOptions.KEYS)}; plus vLLM's SpeculativeConfig fields (e.g. num_speculative_tokens)."
        )
    k = raw.get("num_speculative_tokens")
    if k is None:
        k = DEFAULT_NUM_SPECULATIVE_TOKENS
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_NUM_SPECULATIVE_TOKENS:
        raise FastMTPConfigError(
            f"speculative_config.num_speculative_tokens must be an integer in 1..{MAX_NUM_SPECULATIVE_TOKENS} "
            f"for method 'fastmtp' (the head is run K times), got {k!r}"
        )
    if raw.get("model") not in (None, ""):
        raise FastMTPConfigError(
            "speculative_config.model must be omitted for method 'fastmtp': the draft is the target checkpoint's "
            f"own MTP layer (got {raw['model']!r})"
        )
    hidden_state = raw.pop("hidden_state", None)
    if hidden_state is not None and hidden_state not in HIDDEN_STATE_CHOICES:
        raise FastMTPConfigError(
            f"speculative_config.hidden_state must be one of {HIDDEN_STATE_CHOICES} or omitted "
            f"(then the checkpoint's record decides), got {hidden_state!r}"
        )
    draft_vocab = DraftVocabConfig.parse(raw.pop("draft_vocab", None))
    if draft_vocab is not None and raw.get("draft_sample_method", "greedy") != "greedy":
        raise FastMTPConfigError(
            "speculative_config.draft_vocab needs draft_sample_method 'greedy': a pruned draft has no "
            "full-vocabulary probabilities for probabilistic rejection sampling"
        )
    prompt_lookup = raw.pop("prompt_lookup", None)
    if prompt_lookup is not None and prompt_lookup not in PROMPT_LOOKUP_POLICIES:
        raise FastMTPConfigError(
            f"speculative_config.prompt_lookup must be one of {PROMPT_LOOKUP_POLICIES} or omitted (the head's "
            f"drafts alone), got {prompt_lookup!r}"
        )
    if prompt_lookup is not None and raw.get("draft_sample_method", "greedy") != "greedy":
        raise FastMTPConfigError(
            "speculative_config.prompt_lookup needs draft_sample_method 'greedy': a looked-up token has no draft "
            "probability for probabilistic rejection sampling"
        )
    draft_confidence = raw.pop("draft_confidence", None)
    if draft_confidence is not None:
        try:
            draft_confidence = check_threshold(draft_confidence)
        except ValueError as e:
            raise FastMTPConfigError(f"speculative_config.draft_confidence: {e}; or omit it (K drafts every "
                                     "step)") from None
        if raw.get("draft_sample_method", "greedy") != "greedy":
            raise FastMTPConfigError(
                "speculative_config.draft_confidence needs draft_sample_method 'greedy': probabilistic rejection "
                "sampling takes the drafts' probabilities as a fixed-K block")
    cpu_c_kernels = raw.pop("cpu_c_kernels", True)
    if not isinstance(cpu_c_kernels, bool):
        raise FastMTPConfigError(
            f"speculative_config.cpu_c_kernels must be true (the draft layers' norms and activation on the CPU "
            f"build's C kernels in an eager engine) or false (vLLM's own path), got {cpu_c_kernels!r}")
    raw["num_speculative_tokens"] = k
    raw["method"] = METHOD
    return raw, FastMTPOptions(num_speculative_tokens=k, hidden_state=hidden_state, draft_vocab=draft_vocab,
                               prompt_lookup=prompt_lookup, draft_confidence=draft_confidence,
                               cpu_c_kernels=cpu_c_kernels)
