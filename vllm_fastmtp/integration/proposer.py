"""`FastMTPProposer`: vLLM's EagleProposer for method "mtp", plus FastMTP's serving-side choices.

With a fastmtp config it applies the head's step-1 hidden-state convention and per-request pruned draft
vocabularies, and (opt-in) ends each request's drafts where the head's confidence runs out and merges a
prompt-lookup match into them; with any other config it is its parent.
vLLM's loop already feeds step k > 1 the head's own output hidden state and the embedding of the token drafted at
step k-1, so recursion needs no change here.
Imported only by `runner_v1.patch_v1_runner`, after it has checked the parent's methods and signatures.
"""

from __future__ import annotations

import inspect
import logging
from typing import Callable

import numpy as np
import torch
from vllm.v1.spec_decode.eagle import EagleProposer

from vllm_fastmtp import stats
from vllm_fastmtp.confidence import ConfidenceStop, DraftsDone, top_token
from vllm_fastmtp.conventions import POST_NORM, PRE_NORM
from vllm_fastmtp.draft_vocab import DraftVocabConfig, PrunedDraftHead, resolve_pick_dtype
from vllm_fastmtp.integration.config import fastmtp_options
from vllm_fastmtp.integration.cpu_kernels import c_step1_norm, use_c_kernels
from vllm_fastmtp.integration.linear import draft_linear, pack_plain_linears
from vllm_fastmtp.integration.version import require
from vllm_fastmtp.lookup import MAX_NGRAM, MIN_NGRAM, merge
from vllm_fastmtp.options import FastMTPConfigError, FastMTPOptions

logger = logging.getLogger("vllm.fastmtp")

_PROPOSE_SIGNATURE = inspect.signature(EagleProposer.propose)


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


class FastMTPProposer(EagleProposer):
    """EagleProposer for method "mtp"; with a fastmtp config it also applies the head's step-1 hidden-state
    convention and per-request pruned draft vocabularies."""

    _fastmtp_subclass = True

    def __init__(self, vllm_config, device, runner=None, *args, **kwargs):
        super().__init__(vllm_config, device, runner, *args, **kwargs)
        self._fastmtp: FastMTPOptions | None = fastmtp_options(vllm_config)
        self._fastmtp_runner = runner
        self._fastmtp_step1 = None
        # Pruned drafting (None: full vocabulary): the maps' config, the language detector and the pruned head.
        self._fastmtp_vocab: DraftVocabConfig | None = None
        self._fastmtp_detector = None
        self._fastmtp_head: PrunedDraftHead | None = None
        self._fastmtp_row_langs: list[str] | None = None
        # Prompt lookup (None: off): vLLM's n-gram matcher, and this step's sampled tokens, which the runner's
        # token history gets only after propose (None: the history already holds them).
        self._fastmtp_find = None
        self._fastmtp_sampled = None
        # Draft-confidence stopping (None: off): this propose call's drafts and where each request's end.
        self._fastmtp_stop: ConfidenceStop | None = None

    def load_model(self, target_model, *args, **kwargs):
        super().load_model(target_model, *args, **kwargs)
        if self._fastmtp is None:
            return
        runner = self._fastmtp_runner
        if runner is not None:  # the runner state propose() reads, checked like every other internal
            require(runner, "input_batch", type(runner).__name__)
            require(runner.input_batch, "req_ids", type(runner.input_batch).__name__)
            require(runner, "requests", type(runner).__name__)
        self._fastmtp_step1 = hidden_state_transform(target_model, self._fastmtp.hidden_state)
        packed = pack_plain_linears(self.model)
        if packed:
            stats.DRAFTER["packed_linears"] = ",".join(packed)
        c_layers = []
        if self._fastmtp.cpu_c_kernels:
            self._fastmtp_step1 = c_step1_norm(self._fastmtp_step1, self.vllm_config)
            c_layers = use_c_kernels(self.model, self.vllm_config, keep=target_model)
        if c_layers:
            stats.DRAFTER["c_kernels"] = ",".join(c_layers)
        if self._fastmtp.draft_vocab is not None:
            self._load_draft_vocab()
        if self._fastmtp.prompt_lookup is not None:
            self._load_prompt_lookup(runner)
        if self._fastmtp.draft_confidence is not None:
            _require_sync_scheduling(runner, "draft_confidence", "the scheduler takes each request's drafts as a "
                                     "list whose length may vary only when scheduling synchronously")
            self._fastmtp_stop = ConfidenceStop(self._fastmtp.draft_confidence)
            stats.DRAFTER["draft_confidence"] = str(self._fastmtp.draft_confidence)
        logger.info("fastmtp drafter ready: step-1 hidden state %s, draft vocab %s, prompt lookup %s, "
                    "draft confidence %s, torch Linear layers on vLLM's CPU GEMM: %s, layers on the CPU build's C "
                    "kernels: %d",
                    self._fastmtp.hidden_state,
                    "full" if self._fastmtp_head is None
                    else f"{self._fastmtp_head.describe()} (default {self._fastmtp_vocab.default})",
                    self._fastmtp.prompt_lookup or "off", self._fastmtp.draft_confidence or "off",
                    ", ".join(packed) or "none", len(c_layers))

    def _load_prompt_lookup(self, runner) -> None:
        _require_sync_scheduling(runner, "prompt_lookup", "with async scheduling the token history lags a step")
        require(runner.input_batch, "token_ids_cpu", type(runner.input_batch).__name__)
        require(runner.input_batch, "num_tokens_no_spec", type(runner.input_batch).__name__)
        from vllm.v1.spec_decode import ngram_proposer

        self._fastmtp_find = require(ngram_proposer, "_find_longest_matched_ngram_and_propose_tokens",
                                     ngram_proposer.__name__)
        # numba compiles the matcher on its first call: do it now, not inside the first request's step
        self._fastmtp_find(np.zeros(8, dtype=runner.input_batch.token_ids_cpu.dtype), MIN_NGRAM, MAX_NGRAM, 8, 1)
        stats.DRAFTER["prompt_lookup"] = self._fastmtp.prompt_lookup

    def _load_draft_vocab(self) -> None:
        from transformers import AutoTokenizer

        vocab_size = self.vllm_config.model_config.get_vocab_size()
        self._fastmtp_vocab = self._fastmtp.draft_vocab
        maps, self._fastmtp_detector = self._fastmtp_vocab.load(
            AutoTokenizer.from_pretrained(self._fastmtp.tokenizer), vocab_size)
        weight = self.model.lm_head.weight
        self._fastmtp_head = PrunedDraftHead(
            weight, maps, vocab_size=vocab_size, full=self.model.compute_logits,
            linear=lambda rows: draft_linear(rows, kernel=self._fastmtp_vocab.pick_kernel),
            dtype=resolve_pick_dtype(self._fastmtp_vocab.pick_dtype, weight.dtype, weight.device))
        stats.DRAFTER["pick_dtype"] = str(self._fastmtp_head.dtype).removeprefix("torch.")
        stats.DRAFTER["pick_kernel"] = ",".join(f"{lang}:{k}" for lang, k in self._fastmtp_head.kernels.items())

    def propose(self, *args, **kwargs):
        """[batch, K] draft ids; with draft_confidence, one list per request, each as long as its confidence
        lasted (the runner passes lists to the scheduler as they are, as it does for vLLM's ngram drafts)."""
        if self._fastmtp is None:
            return super().propose(*args, **kwargs)
        bound = _PROPOSE_SIGNATURE.bind(self, *args, **kwargs)
        bound.arguments["target_hidden_states"] = self._fastmtp_step1(bound.arguments["target_hidden_states"])
        batch_size = bound.arguments["common_attn_metadata"].batch_size()
        req_ids = self._batch_req_ids(batch_size)
        if self._fastmtp_head is not None:
            self._fastmtp_row_langs = [self._language_of(r) for r in req_ids]
        stop = self._fastmtp_stop
        if stop is None:
            drafts = super().propose(*bound.args[1:], **bound.kwargs)
        else:
            stop.start(batch_size)
            try:
                super().propose(*bound.args[1:], **bound.kwargs)
            except DraftsDone:
                stats.CONFIDENCE["skipped_steps"] += bound.arguments["num_speculative_tokens"] - stop.num_steps
            drafts = stop.rows()
            stats.DRAFT_LENGTHS.update(len(row) for row in drafts)
        if self._fastmtp_find is not None:
            drafts = self._with_prompt_lookup(drafts, len(req_ids), bound.arguments["num_speculative_tokens"])
        stats.record_drafts(req_ids, drafts, self._fastmtp_row_langs)
        return drafts

    def prepare_next_token_ids_padded(self, sampled_token_ids, *args, **kwargs):
        # the padded path drafts before the runner's bookkeeping: keep this step's tokens for the lookup
        self._fastmtp_sampled = sampled_token_ids if self._fastmtp_find is not None else None
        return super().prepare_next_token_ids_padded(sampled_token_ids, *args, **kwargs)

    def prepare_next_token_ids_cpu(self, *args, **kwargs):
        self._fastmtp_sampled = None  # the unpadded path drafts after bookkeeping: the history is complete
        return super().prepare_next_token_ids_cpu(*args, **kwargs)

    def _with_prompt_lookup(self, drafts: torch.Tensor | list[list[int]], batch_size: int,
                            k: int) -> torch.Tensor | list[list[int]]:
        """The head's drafts with each request's prompt-lookup match merged in (`lookup.merge`); lists stay lists
        (draft_confidence's rows, of varying length)."""
        batch = self._fastmtp_runner.input_batch
        sampled = None if self._fastmtp_sampled is None else self._fastmtp_sampled[:batch_size].tolist()
        self._fastmtp_sampled = None
        as_lists = isinstance(drafts, list)
        rows = drafts if as_lists else None  # the head's drafts as lists, made only once a request has a match
        n, max_len = min(batch_size, len(drafts)), self.vllm_config.model_config.max_model_len
        changed = 0
        for i in range(n):
            history = batch.token_ids_cpu[i, : int(batch.num_tokens_no_spec[i])]
            if sampled is not None:
                new = [t for t in sampled[i] if t >= 0]
                if not new:  # nothing sampled this step (a partial prefill): its drafts are discarded anyway
                    continue
                history = np.concatenate([history, np.asarray(new, dtype=history.dtype)])
            found = self._fastmtp_find(history, MIN_NGRAM, MAX_NGRAM, max_len, k)
            if not len(found):
                continue
            rows = drafts.tolist() if rows is None else rows
            row = merge(rows[i], found.tolist(), self._fastmtp.prompt_lookup, k)
            if row != rows[i]:
                rows[i] = row
                changed += 1
        stats.LOOKUP_ROWS["changed"] += changed
        stats.LOOKUP_ROWS["rows"] += n
        if as_lists or not changed:
            return drafts
        return torch.tensor(rows, dtype=drafts.dtype, device=drafts.device)

    def _greedy_sample(self, hidden_states):
        stop = self._fastmtp_stop
        if self._fastmtp_head is None or self._fastmtp_row_langs is None:
            if stop is None:
                return super()._greedy_sample(hidden_states)
            ids, probs = top_token(self.model.compute_logits(hidden_states))
        else:
            langs = self._fastmtp_row_langs
            if hidden_states.shape[0] > len(langs):  # padded rows: any map will do, they are discarded
                langs = langs + [langs[-1] if langs else self._fastmtp_vocab.default] * (
                    hidden_states.shape[0] - len(langs))
            langs = langs[: hidden_states.shape[0]]
            if stop is None:
                return self._fastmtp_head.argmax(hidden_states, langs)
            ids, probs = self._fastmtp_head.pick(hidden_states, langs)
        if stop.add(ids, probs) and stop.num_steps < self.num_speculative_tokens:
            raise DraftsDone  # every request has ended: skip the head's remaining steps (caught in propose)
        return ids

    def _batch_req_ids(self, batch_size: int) -> list[str]:
        runner = self._fastmtp_runner
        if runner is None:
            return []
        return list(runner.input_batch.req_ids[:batch_size])

    def _language_of(self, req_id: str) -> str:
        cached = stats.REQUEST_LANGUAGE.get(req_id)
        if cached is not None:
            return cached
        request = self._fastmtp_runner.requests[req_id]
        lang = self._fastmtp_vocab.language_for(self._fastmtp_detector, list(request.prompt_token_ids or []))
        stats.REQUEST_LANGUAGE[req_id] = lang
        return lang


def _require_sync_scheduling(runner, option: str, why: str) -> None:
    if runner is None:
        raise FastMTPConfigError(f"speculative_config.{option} needs vLLM's V1 model runner; this drafter was "
                                 "built without one")
    if getattr(runner, "use_async_scheduling", False):
        raise FastMTPConfigError(
            f"speculative_config.{option} needs synchronous scheduling ({why}): serve with "
            f"--no-async-scheduling, or drop {option}")
