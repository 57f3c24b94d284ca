"""Draft-side pieces the vLLM proposer applies, kept free of vLLM internals so they can be tested alone."""

from __future__ import annotations

from typing import Callable

import torch

from vllm_fastmtp.conventions import POST_NORM, PRE_NORM


def hidden_state_transform(target_model, convention: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """What draft step 1 receives from the main model's last hidden state.

    vLLM's MiMo returns the state before its final norm (the norm runs in compute_logits); a head trained on
    post-norm states (FastMTP's recipe) must get the norm applied, with the target's own weights.
    """
    if convention == PRE_NORM:
        return lambda h: h
    if convention != POST_NORM:
        raise ValueError(f"unknown hidden-state convention {convention!r}")
    language_model = target_model.get_language_model() if hasattr(target_model, "get_language_model") else target_model
    norm = getattr(getattr(language_model, "model", None), "norm", None)
    if norm is None:
        raise RuntimeError(
            f"fastmtp: cannot find the final norm (model.norm) of {type(language_model).__name__} to feed the MTP "
            "head post-norm hidden states; serve with \"hidden_state\": \"pre_norm\" if the head was trained that way"
        )
    return norm


class DraftVocabulary:
    """Per-request pruned draft vocabularies: a language detector plus one sub-head per language map."""

    def __init__(self, config, head, detector):
        self._config, self._head, self._detector = config, head, detector
        self.default = config.default

    @classmethod
    def from_options(cls, options: dict, *, lm_head_weight: torch.Tensor, tokenizer_path: str, vocab_size: int):
        from transformers import AutoTokenizer

        from vllm_fastmtp.draft_vocab import DraftVocabConfig, PrunedDraftHead

        config = DraftVocabConfig(**options)
        maps, detector = config.load(AutoTokenizer.from_pretrained(tokenizer_path), vocab_size)
        return cls(config, PrunedDraftHead(lm_head_weight, maps, vocab_size=vocab_size), detector)

    def detect(self, prompt_token_ids) -> str:
        return self._config.language_for(self._detector, list(prompt_token_ids))

    def argmax(self, hidden_states: torch.Tensor, langs: list[str]) -> torch.Tensor:
        return self._head.argmax(hidden_states, langs)

    def describe(self) -> str:
        sizes = {lang: ("full" if ids is None else f"{ids.numel()} ids") for lang, ids in self._head.ids.items()}
        return ", ".join(f"{lang}: {n}" for lang, n in sizes.items()) + f" (default {self.default})"
