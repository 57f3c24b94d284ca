"""Wall-clock timers around the pieces of one in-process V1 engine step, for ``benchmarks.step_profile``.

Speed-up is τ ÷ (cost of a speculative step relative to a plain one); this says where that cost goes. On CPU every
op runs synchronously, so ``time.perf_counter`` around a call is the call's cost (on a GPU it would only be the
launch time, so other platforms are refused). Each piece is a component with a parent; time a parent spends
outside its timed children is reported as its "other" by the benchmark. Totals are kept per step kind (prefill
or decode, from the step's scheduler output), so warm-up and prompts do not blur the per-decode-step means.

Every vLLM attribute is found with ``require`` and wrapped on the instance (class attributes stay untouched, so
calls through ``super()`` inside a wrapped method are not counted twice); ``remove()`` puts the originals back.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Callable

from vllm_fastmtp.integration.version import UnsupportedVLLMError, installed_vllm_version, require, require_params

# (name, parent, what it times). Order = report order; a parent comes before its children.
COMPONENTS: tuple[tuple[str, str | None, str], ...] = (
    ("step", None, "LLMEngine.step: one engine step, end to end"),
    ("schedule", "step", "Scheduler.schedule"),
    ("execute_model", "step", "model runner execute_model: inputs, target forward, logits"),
    ("update_states", "execute_model", "runner._update_states (batch state from the scheduler output)"),
    ("prepare_inputs", "execute_model", "runner._prepare_inputs (positions, ids, logits indices, spec metadata)"),
    ("attn_metadata", "execute_model", "runner._build_attention_metadata (the target's attention metadata)"),
    ("target_forward", "execute_model", "runner._model_forward: the target model (split by scheduled tokens)"),
    ("target_attention", "target_forward", "the target's attention layers (vLLM Attention.forward, all layers)"),
    ("compute_logits", "execute_model", "target model compute_logits"),
    ("sample_tokens", "step", "model runner sample_tokens: sampling, bookkeeping, drafting"),
    ("sample", "sample_tokens", "runner._sample: sampler, or rejection sampler when drafts are verified"),
    ("bookkeeping", "sample_tokens", "runner._bookkeeping_sync (sampled ids to the CPU, request state)"),
    ("propose", "sample_tokens", "runner.propose_draft_token_ids: drafting incl. the runner's input preparation"),
    ("drafter", "propose", "drafter.propose"),
    ("draft_inputs", "drafter", "drafter set_inputs_first_pass + build_model_inputs_first_pass"),
    ("draft_attn_metadata", "drafter", "drafter attention metadata (build + per-step position/slot update)"),
    ("draft_forward", "drafter", "draft model forward, per draft step (split by tokens: first pass vs later)"),
    ("draft_attention", "draft_forward", "the draft model's attention layers (vLLM Attention.forward)"),
    ("draft_pick", "drafter", "draft logits + argmax (_sample_draft_tokens; fastmtp maps: the pruned head)"),
    ("fastmtp_step1", "drafter", "fastmtp: step-1 hidden-state transform (final norm when post-norm)"),
    ("fastmtp_language", "drafter", "fastmtp: per-request language lookup for the draft map"),
    ("fastmtp_stats", "drafter", "fastmtp: per-process draft counters (stats.record_drafts)"),
    ("update_from_output", "step", "Scheduler.update_from_output"),
    ("take_drafts", "step", "executor.take_draft_token_ids (post step)"),
    ("update_drafts", "step", "Scheduler.update_draft_token_ids (post step)"),
    ("process_outputs", "step", "OutputProcessor.process_outputs (detokenize, request outputs)"),
)
PARENT = {name: parent for name, parent, _ in COMPONENTS}
KINDS = ("prefill", "decode")


class ProfilerSetupError(RuntimeError):
    """The engine cannot be profiled as built (not in-process, not CPU, compiled, async scheduling)."""


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UnsupportedVLLMError(
            f"vllm-fastmtp profiling: vLLM {installed_vllm_version()} has no module {name}") from e


def _tokens_of(args: tuple, kwargs: dict) -> str:
    """Bucket label of a model forward: its number of input tokens (positions' last dim)."""
    pos = kwargs.get("positions")
    return str(pos.shape[-1]) if pos is not None else "?"


def _sampler_kind(args: tuple, kwargs: dict) -> str:
    meta = args[1] if len(args) > 1 else kwargs.get("spec_decode_metadata")
    return "sampler" if meta is None else "rejection sampler"


def _step_kind(so) -> str:
    """Decode: every scheduled request runs exactly its last token plus its drafts; anything else is prefill."""
    if so.scheduled_new_reqs:
        return "prefill"
    spec = so.scheduled_spec_decode_tokens
    return "decode" if all(n == 1 + len(spec.get(r, ())) for r, n in so.num_scheduled_tokens.items()) else "prefill"


class StepProfiler:
    """Per-component seconds and call counts, per step kind; ``reset()`` after warm-up, ``summary()`` to read."""

    def __init__(self):
        self._patched: list[tuple[Any, str, Any, bool]] = []
        self.reset()

    def reset(self) -> None:
        self.totals = {k: self._empty() for k in KINDS}
        self._begin()

    @staticmethod
    def _empty() -> dict:
        return {"steps": 0, "tokens": 0, "components": {}, "splits": {}, "by_scheduled_tokens": {}}

    def _begin(self) -> None:
        self._cur: dict[str, list] = {}
        self._cur_split: dict[str, dict[str, list]] = {}
        self._sched = None
        self._tokens = 0

    def _add(self, name: str, dt: float, label: str | None) -> None:
        acc = self._cur.setdefault(name, [0.0, 0])
        acc[0] += dt
        acc[1] += 1
        if label is not None:
            acc = self._cur_split.setdefault(name, {}).setdefault(label, [0.0, 0])
            acc[0] += dt
            acc[1] += 1

    def _end(self, dt: float) -> None:
        """Fold the finished step into its kind's totals (a step that scheduled nothing is dropped)."""
        if self._sched is None:
            return
        self._add("step", dt, None)
        tot = self.totals[_step_kind(self._sched)]
        tot["steps"] += 1
        tot["tokens"] += self._tokens
        for name, (s, n) in self._cur.items():
            acc = tot["components"].setdefault(name, {"s": 0.0, "calls": 0})
            acc["s"] += s
            acc["calls"] += n
        for name, labels in self._cur_split.items():
            for label, (s, n) in labels.items():
                acc = tot["splits"].setdefault(name, {}).setdefault(label, {"s": 0.0, "calls": 0})
                acc["s"] += s
                acc["calls"] += n
        acc = tot["by_scheduled_tokens"].setdefault(str(self._sched.total_num_scheduled_tokens),
                                                    {"s": 0.0, "steps": 0, "tokens": 0})
        acc["s"] += dt
        acc["steps"] += 1
        acc["tokens"] += self._tokens

    def summary(self) -> dict:
        """Totals per step kind plus the component tree (JSON-ready)."""
        import copy

        return {"kinds": copy.deepcopy(self.totals), "components": [list(c) for c in COMPONENTS]}

    # --- installing -------------------------------------------------------------------------------------------

    def _wrap(self, obj: Any, attr: str, where: str, name: str, split: Callable | None = None,
              after: Callable | None = None) -> None:
        fn = require(obj, attr, where)
        add, clock = self._add, time.perf_counter

        def timed(*args, **kwargs):
            t = clock()
            try:
                out = fn(*args, **kwargs)
            finally:
                add(name, clock() - t, split(args, kwargs) if split else None)
            if after is not None:
                after(out, args)
            return out

        timed.__wrapped__ = fn
        self._patched.append((obj, attr, fn, attr in getattr(obj, "__dict__", {})))
        setattr(obj, attr, timed)

    def _wrap_step(self, engine: Any) -> None:
        fn = require(engine, "step", "LLMEngine")

        def step(*args, **kwargs):
            self._begin()
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self._end(time.perf_counter() - t)
            return out

        step.__wrapped__ = fn
        self._patched.append((engine, "step", fn, "step" in engine.__dict__))
        engine.step = step

    def _wrap_attention(self, model: Any, name: str) -> None:
        """Every vLLM attention layer of ``model``: the attention kernels apart from the matmuls around them."""
        attention = _module("vllm.model_executor.layers.attention.attention")
        cls = require(attention, "Attention", attention.__name__)
        layers = [m for m in model.modules() if isinstance(m, cls)]
        if not layers:
            raise ProfilerSetupError(f"{type(model).__name__} has no {cls.__module__}.Attention layer to time")
        for layer in layers:
            self._wrap(layer, "forward", "Attention", name)

    def remove(self) -> None:
        """Restore every wrapped attribute."""
        for obj, attr, fn, own in reversed(self._patched):
            if own:
                setattr(obj, attr, fn)
            else:
                delattr(obj, attr)
        self._patched.clear()

    def _on_schedule(self, out, args) -> None:
        self._sched = out

    def _on_update(self, out, args) -> None:
        model_output = args[1]
        self._tokens += sum(len(t) for t in require(model_output, "sampled_token_ids", type(model_output).__name__))


def install_step_profiler(llm) -> StepProfiler:
    """Time the pieces of every step of ``llm`` (a ``vllm.LLM`` with its engine in this process, eager, on CPU).

    Raises UnsupportedVLLMError (an internal is missing) or ProfilerSetupError (this engine cannot be timed so).
    """
    if not require(_module("vllm.platforms"), "current_platform", "vllm.platforms").is_cpu():
        raise ProfilerSetupError("step timers measure synchronous CPU execution; on a GPU use the torch profiler")
    engine = require(llm, "llm_engine", "LLM")
    client = require(engine, "engine_core", "LLMEngine")
    if not hasattr(client, "engine_core"):
        raise ProfilerSetupError(
            f"the engine core runs in another process ({type(client).__name__}); set VLLM_ENABLE_V1_MULTIPROCESSING=0")
    core = client.engine_core
    scheduler = require(core, "scheduler", "EngineCore")
    executor = require(core, "model_executor", "EngineCore")
    worker = require(require(executor, "driver_worker", type(executor).__name__), "worker", "WorkerWrapperBase")
    runner = require(worker, "model_runner", type(worker).__name__)
    vllm_config = require(runner, "vllm_config", type(runner).__name__)
    if not require(require(vllm_config, "model_config", "VllmConfig"), "enforce_eager", "ModelConfig"):
        raise ProfilerSetupError("compiled graphs fuse the timed pieces; build the engine with enforce_eager=True")
    if require(require(vllm_config, "scheduler_config", "VllmConfig"), "async_scheduling", "SchedulerConfig"):
        raise ProfilerSetupError("async scheduling overlaps steps; profile with async_scheduling=False")
    mod = "vllm.v1.worker.gpu_model_runner"
    if not isinstance(runner, require(_module(mod), "GPUModelRunner", mod)):
        raise ProfilerSetupError(f"{type(runner).__name__} is not the V1 GPUModelRunner family (Model Runner V2?)")
    rn = type(runner).__name__
    require_params(require(runner, "_model_forward", rn), ("input_ids", "positions"), f"{rn}._model_forward")
    require_params(require(runner, "_sample", rn), ("logits", "spec_decode_metadata"), f"{rn}._sample")

    p = StepProfiler()
    p._wrap_step(engine)
    p._wrap(scheduler, "schedule", "Scheduler", "schedule", after=p._on_schedule)
    p._wrap(scheduler, "update_from_output", "Scheduler", "update_from_output", after=p._on_update)
    p._wrap(scheduler, "update_draft_token_ids", "Scheduler", "update_drafts")
    p._wrap(executor, "take_draft_token_ids", type(executor).__name__, "take_drafts")
    p._wrap(require(engine, "output_processor", "LLMEngine"), "process_outputs", "OutputProcessor", "process_outputs")
    p._wrap(runner, "execute_model", rn, "execute_model")
    p._wrap(runner, "_update_states", rn, "update_states")
    p._wrap(runner, "_prepare_inputs", rn, "prepare_inputs")
    p._wrap(runner, "_build_attention_metadata", rn, "attn_metadata")
    p._wrap(runner, "_model_forward", rn, "target_forward", split=_tokens_of)
    target = require(runner, "model", rn)
    p._wrap(target, "compute_logits", "target model", "compute_logits")
    p._wrap_attention(target, "target_attention")
    p._wrap(runner, "sample_tokens", rn, "sample_tokens")
    p._wrap(runner, "_sample", rn, "sample", split=_sampler_kind)
    p._wrap(runner, "_bookkeeping_sync", rn, "bookkeeping")
    drafter = getattr(runner, "drafter", None) if vllm_config.speculative_config is not None else None
    if drafter is not None:
        _wrap_drafter(p, runner, drafter)
    return p


def _wrap_drafter(p: StepProfiler, runner, drafter) -> None:
    dn = type(drafter).__name__
    p._wrap(runner, "propose_draft_token_ids", type(runner).__name__, "propose")
    p._wrap(drafter, "propose", dn, "drafter")
    model = getattr(drafter, "model", None)
    if model is None:  # ngram and other model-free drafters: propose is the whole story
        return
    p._wrap(drafter, "set_inputs_first_pass", dn, "draft_inputs")
    p._wrap(drafter, "build_model_inputs_first_pass", dn, "draft_inputs")
    p._wrap(drafter, "build_per_group_and_layer_attn_metadata", dn, "draft_attn_metadata")
    p._wrap(drafter, "_update_positions_dependent_metadata", dn, "draft_attn_metadata")
    p._wrap(model, "forward", type(model).__name__, "draft_forward", split=_tokens_of)
    p._wrap_attention(model, "draft_attention")
    p._wrap(drafter, "_sample_draft_tokens", dn, "draft_pick")
    if getattr(drafter, "_fastmtp", None) is not None:  # FastMTPProposer serving a fastmtp config
        from vllm_fastmtp import stats

        p._wrap(drafter, "_fastmtp_step1", dn, "fastmtp_step1")
        p._wrap(drafter, "_language_of", dn, "fastmtp_language")
        p._wrap(stats, "record_drafts", "vllm_fastmtp.stats", "fastmtp_stats")
