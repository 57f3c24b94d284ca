"""Config-side patches: "fastmtp" becomes a `--speculative-config` method that runs on vLLM's MTP machinery.

* `SpeculativeConfig` (config/speculative.py): "fastmtp" is added to the `method` Literal and mapped onto "mtp" in
  `__post_init__`; the resolved FastMTP options ride on the draft model's hf_config, which is pickled to the
  engine core and workers.
* `EngineArgs.create_speculative_config` (engine/arg_utils.py): the FastMTP-only keys are taken out and validated
  (model has an MTP layer, maps fit the tokenizer) before vLLM sees them, since its config forbids unknown keys.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from vllm_fastmtp.checkpoint import require_mtp_layer
from vllm_fastmtp.conventions import hidden_state_from_config
from vllm_fastmtp.integration.version import UnsupportedVLLMError, check_vllm_version, require, require_params
from vllm_fastmtp.options import (
    HF_CONFIG_ATTR,
    METHOD,
    FastMTPConfigError,
    FastMTPOptions,
    split_speculative_config,
)

logger = logging.getLogger("vllm.fastmtp")  # under vLLM's logger, so its handlers print it


def fastmtp_options(vllm_config) -> FastMTPOptions | None:
    """The resolved FastMTP options of an engine config, or None when it is not a fastmtp config."""
    spec = getattr(vllm_config, "speculative_config", None)
    draft = getattr(spec, "draft_model_config", None) if spec is not None else None
    hf = getattr(draft, "hf_config", None) if draft is not None else None
    rec = getattr(hf, HF_CONFIG_ATTR, None) if hf is not None else None
    return None if rec is None else FastMTPOptions.from_record(rec)


def _check_target_has_mtp_layer(target_model_config) -> None:
    hf = target_model_config.hf_config
    require_mtp_layer(
        architectures=list(getattr(hf, "architectures", None) or []),
        num_nextn_predict_layers=getattr(hf, "num_nextn_predict_layers", None),
        model_path=str(target_model_config.model),
    )


def select_v1_runner() -> None:
    """FastMTP drafts through the V1 runner's proposer; pick it unless the user forced Model Runner V2."""
    value = os.environ.get("VLLM_USE_V2_MODEL_RUNNER")
    if value is None:
        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    elif value.strip().lower() in ("1", "true"):
        raise FastMTPConfigError(
            "method 'fastmtp' runs on vLLM's V1 model runner; VLLM_USE_V2_MODEL_RUNNER=1 forces Model Runner V2, "
            "whose speculators (v1/worker/gpu/spec_decode) fastmtp does not implement yet. Unset it."
        )


def _check_draft_vocab(draft_vocab, target, parallel):
    """Validate every map against the model's tokenizer before any engine process starts; returns the config
    with resolved absolute paths, so that workers with another working directory load the same files."""
    if draft_vocab is None:
        return None
    if parallel is not None and parallel.tensor_parallel_size > 1:
        raise FastMTPConfigError(
            "speculative_config.draft_vocab is not supported with tensor parallelism yet: vLLM shards the "
            "shared lm_head by vocabulary, and the pruned draft head would need a shard-aware gather. "
            'Use "draft_vocab": null (full-vocabulary drafting) with tensor_parallel_size > 1.'
        )
    from transformers import AutoTokenizer

    from vocab_maps.format import load_vocab_map, resolve_map_path, tokenizer_fingerprint

    fingerprint = tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(target.tokenizer)))
    for m in draft_vocab.maps.values():
        if m is not None:
            load_vocab_map(m, vocab_size=target.get_vocab_size(), fingerprint=fingerprint)
    return dataclasses.replace(draft_vocab, maps={
        lang: None if m is None else str(resolve_map_path(m).resolve()) for lang, m in draft_vocab.maps.items()
    })


def _resolve_options(spec_config, opts: FastMTPOptions) -> FastMTPOptions:
    draft_hf = spec_config.draft_model_config.hf_config
    hidden_state = opts.hidden_state or hidden_state_from_config(
        draft_hf, source=f"{spec_config.draft_model_config.model}/config.json"
    )
    # replace, not rebuild: every other option (draft_vocab, already resolved by _check_draft_vocab, included)
    # reaches the workers as the user gave it
    return dataclasses.replace(
        opts,
        num_speculative_tokens=spec_config.num_speculative_tokens,
        hidden_state=hidden_state,
        tokenizer=str(spec_config.target_model_config.tokenizer),
    )


def patch_speculative_config(vllm_version: str) -> None:
    import typing

    import pydantic.dataclasses

    from vllm.config import speculative as spec_mod

    cls = require(spec_mod, "SpeculativeConfig", "vllm.config.speculative")
    method_literal = require(spec_mod, "SpeculativeMethod", "vllm.config.speculative")
    fields = getattr(cls, "__dataclass_fields__", {})
    for name in ("method", "num_speculative_tokens", "draft_model_config", "target_model_config"):
        if name not in fields:
            raise UnsupportedVLLMError(f"vllm-fastmtp: vLLM {vllm_version} SpeculativeConfig has no field {name!r}")
    if getattr(cls, "_fastmtp_patched", False):
        return

    # 1. "fastmtp" becomes a valid method (pydantic validates the Literal at construction).
    extended = typing.Literal[typing.get_args(method_literal) + (METHOD,)]  # type: ignore[valid-type]
    fields["method"].type = extended | None
    cls.__annotations__["method"] = extended | None
    spec_mod.SpeculativeMethod = extended
    pydantic.dataclasses.rebuild_dataclass(cls, force=True)

    # 2. "fastmtp" runs on the MTP machinery; remember it was FastMTP on the draft hf_config.
    original_post_init = cls.__post_init__

    def __post_init__(self, *args, **kwargs):
        if self.method != METHOD:
            return original_post_init(self, *args, **kwargs)
        check_vllm_version()
        if self.target_model_config is None:
            raise FastMTPConfigError("method 'fastmtp' needs the target model config (the draft is its MTP layer)")
        opts = getattr(self, "_fastmtp_pending", None)
        if opts is None:  # SpeculativeConfig(method="fastmtp", ...) built directly, not through EngineArgs
            _check_target_has_mtp_layer(self.target_model_config)
            _, opts = split_speculative_config(
                {"num_speculative_tokens": self.num_speculative_tokens}, set(fields)
            )
            self.num_speculative_tokens = opts.num_speculative_tokens
        select_v1_runner()
        self.method = "mtp"
        original_post_init(self, *args, **kwargs)
        resolved = _resolve_options(self, opts)
        setattr(self.draft_model_config.hf_config, HF_CONFIG_ATTR, resolved.to_record())
        logger.info("fastmtp: K=%d, step-1 hidden state %s, draft vocab %s",
                    resolved.num_speculative_tokens, resolved.hidden_state,
                    "full" if resolved.draft_vocab is None else resolved.draft_vocab.maps)

    cls.__post_init__ = __post_init__
    cls._fastmtp_patched = True


def patch_engine_args(vllm_version: str) -> None:
    from vllm.config import speculative as spec_mod
    from vllm.engine import arg_utils

    engine_args = require(arg_utils, "EngineArgs", "vllm.engine.arg_utils")
    original = require(engine_args, "create_speculative_config", "EngineArgs")
    if getattr(original, "_fastmtp", False):
        return
    require_params(original, ("target_model_config", "target_parallel_config"),
                    "EngineArgs.create_speculative_config")
    vllm_keys = set(spec_mod.SpeculativeConfig.__dataclass_fields__)

    def create_speculative_config(self, target_model_config, target_parallel_config):
        raw = dict(self.speculative_config or {})
        method = raw.get("method") or getattr(self, "spec_method", None)
        if method != METHOD:
            return original(self, target_model_config, target_parallel_config)
        check_vllm_version()
        if getattr(self, "spec_method", None) is not None:
            raw.setdefault("method", self.spec_method)
            self.spec_method = None
        if getattr(self, "spec_tokens", None) is not None:
            raw.setdefault("num_speculative_tokens", self.spec_tokens)
            self.spec_tokens = None
        vllm_dict, opts = split_speculative_config(raw, vllm_keys)
        # Checked here, not in __post_init__, where pydantic would wrap the errors.
        _check_target_has_mtp_layer(target_model_config)
        opts = dataclasses.replace(
            opts, draft_vocab=_check_draft_vocab(opts.draft_vocab, target_model_config, target_parallel_config))
        vllm_dict.update(target_model_config=target_model_config, target_parallel_config=target_parallel_config)
        self.speculative_config = vllm_dict
        # Hand the validated options to __post_init__ (SpeculativeConfig forbids extra constructor keys).
        cls = spec_mod.SpeculativeConfig
        cls._fastmtp_pending = opts
        try:
            return cls(**vllm_dict)
        finally:
            del cls._fastmtp_pending

    create_speculative_config._fastmtp = True
    engine_args.create_speculative_config = create_speculative_config
