"""Self-distilled training data: the model answers the prompts itself, through vLLM's offline engine.

FastMTP's gain over vanilla MTP comes largely from training the head on the main model's OWN answers, so
every assistant turn is regenerated, and later user turns are conditioned on the model's earlier answers.

The output is append-only JSONL written in chunks (each chunk one write + fsync) next to a sidecar
``OUT.meta.json`` recording what produced it. Re-running the same command resumes: a trailing partial line
(left by a kill) is cut off and ids already in the file are skipped. Running a *different* command on the
same output is refused, naming the fields that differ.

    python -m training.distill --model DIR --prompts a.jsonl:math b.jsonl --out data.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from training.files import atomic_write, json_object
from training.prompts import FORMATS, Conversation, PromptFormatError, load_inputs

# The FastMTP report's self-distillation settings.
PAPER_SAMPLING = {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "max_tokens": 4096}
META_VERSION = 1
# Sidecar fields that must match for a run to append to an existing output.
COMPARED_FIELDS = (
    "model", "sampling", "n", "seed", "inputs", "format", "default_category", "system_prompt",
    "raw_prompts", "chat_template_sha1", "chat_template_kwargs", "after_cut",
)
# Finish reasons that mean the conversation did not end on its own.
INCOMPLETE_REASONS = ("length", "prompt_too_long")


class DistillError(RuntimeError):
    """A problem found before generation; the message says what and where."""


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.distill",
        description="Regenerate the assistant turns of prompt files with the model itself (vLLM offline).",
    )
    io = p.add_argument_group("inputs and output")
    io.add_argument("--model", required=True, help="model directory or name, as vLLM takes it")
    io.add_argument("--tokenizer", default=None, help="tokenizer (default: the model's)")
    io.add_argument(
        "--prompts", nargs="+", required=True, metavar="PATH[:CATEGORY]",
        help="prompt files (JSONL or JSON array, optionally .gz) in turns/messages/conversations/prompt "
        "format; ':CATEGORY' tags every prompt of the file; 'hf:NAME[@SPLIT]' reads a Hugging Face dataset",
    )
    io.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="input format (default: per line)")
    io.add_argument("--default-category", default="general", help="category of untagged prompts without a 'category' field")
    io.add_argument("--out", required=True, help="output JSONL; re-running the same command resumes it")
    io.add_argument("--stats", default=None, help="stats JSON written at the end (default: OUT.stats.json)")
    io.add_argument("--limit", type=int, default=None, help="only the first N conversations (after sharding)")
    io.add_argument("--shard", default=None, metavar="I/N", help="only conversations whose id hashes to shard I of N (one process or node per shard)")

    chat = p.add_argument_group("chat formatting")
    chat.add_argument("--system-prompt", default=None, help="system message for conversations that have none")
    chat.add_argument("--chat-template-kwargs", default="{}", help='JSON passed to the chat template, e.g. \'{"enable_thinking": true}\'')
    chat.add_argument(
        "--allow-raw-prompts", action="store_true",
        help="if the tokenizer has no chat template, feed the text raw (turns joined by blank lines) instead of failing",
    )

    s = p.add_argument_group("sampling (defaults: the FastMTP paper)")
    s.add_argument("--temperature", type=float, default=PAPER_SAMPLING["temperature"])
    s.add_argument("--top-k", type=int, default=PAPER_SAMPLING["top_k"])
    s.add_argument("--top-p", type=float, default=PAPER_SAMPLING["top_p"])
    s.add_argument("--min-p", type=float, default=0.0)
    s.add_argument("--repetition-penalty", type=float, default=1.0)
    s.add_argument("--max-tokens", type=int, default=PAPER_SAMPLING["max_tokens"], help="max new tokens per assistant turn")
    s.add_argument(
        "--after-cut", choices=("stop", "continue"), default="stop",
        help="a turn cut at --max-tokens: 'stop' (default) ends the conversation there; 'continue' asks the next "
        "user turn after the cut answer, as a chat client with a token cap (and benchmarks.run) does",
    )
    s.add_argument("--n", type=int, default=1, help="independent samples per conversation (ids get a '#sK' suffix when > 1)")
    s.add_argument("--seed", type=int, default=0, help="per-request seeds derive from this and the item id, so resumed runs sample the same")

    e = p.add_argument_group("engine (passed to vllm.LLM)")
    e.add_argument("--chunk-size", type=int, default=512, help="conversations per generate call and per fsync'd write")
    e.add_argument("--tensor-parallel-size", type=int, default=None)
    e.add_argument("--pipeline-parallel-size", type=int, default=None)
    e.add_argument(
        "--data-parallel-size", type=int, default=1,
        help="independent engine replicas in this process's children, one per slice of GPUs "
        "(vLLM's LLM refuses data_parallel_size in one process)",
    )
    e.add_argument("--distributed-executor-backend", default=None, help="mp, ray, uni, external_launcher")
    e.add_argument("--dtype", default=None,
                   help="vLLM's dtype (auto, float32, bfloat16, ...) or native: bfloat16 where this machine computes "
                   "it natively (CUDA, AVX-512 BF16, AMX), float32 elsewhere (emulated bf16 is slower than fp32)")
    e.add_argument("--max-model-len", type=int, default=None)
    e.add_argument("--gpu-memory-utilization", type=float, default=None)
    e.add_argument("--enforce-eager", action="store_true", default=None)
    e.add_argument("--trust-remote-code", action="store_true", default=None)
    e.add_argument(
        "--top-k-top-p", choices=("auto", "fast", "vllm"), default="auto",
        help="who applies top-k then top-p: 'fast' = a logits processor that cuts top-p among the top-k "
        "(vllm_fastmtp.integration.sampling; same masked logits, so the same seeded samples), 'vllm' = vLLM's "
        "sampler, which sorts the whole vocabulary on CPU; 'auto' (default): fast on CPU when both are set",
    )
    e.add_argument(
        "--engine-arg", action="append", default=[], metavar="KEY=VALUE",
        help="any other vllm.LLM keyword; VALUE is parsed as JSON when it can be (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def engine_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments for vllm.LLM: only what the user set, so vLLM's own defaults apply otherwise."""
    kw: dict = {"model": args.model}
    for name in (
        "tokenizer", "tensor_parallel_size", "pipeline_parallel_size", "distributed_executor_backend", "dtype",
        "max_model_len", "gpu_memory_utilization", "enforce_eager", "trust_remote_code",
    ):
        val = getattr(args, name)
        if name == "dtype":
            from training.precision import resolve_dtype

            val = resolve_dtype(val)
        if val is not None:
            kw[name] = val
    for item in args.engine_arg:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise DistillError(f"--engine-arg {item!r}: expected KEY=VALUE")
        try:
            kw[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            kw[key.replace("-", "_")] = raw
    if fast_top_k_top_p(args):
        from vllm_fastmtp.integration.sampling import LOGITS_PROCESSOR

        kw["logits_processors"] = [*kw.get("logits_processors", []), LOGITS_PROCESSOR]
    return kw


def fast_top_k_top_p(args: argparse.Namespace) -> bool:
    """Whether top-k then top-p goes through the sort-free logits processor (see --top-k-top-p)."""
    if args.top_k_top_p == "vllm":
        return False
    from vllm_fastmtp.integration.sampling import split_top_k_top_p

    if split_top_k_top_p(sampling_dict(args))[1] is None:  # not both set: nothing for it to do
        return False
    # auto: vLLM's GPU samplers (FlashInfer, Triton) do not sort; its CPU one does
    return args.top_k_top_p == "fast" or not on_gpu()


def on_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def sampling_dict(args: argparse.Namespace) -> dict:
    return {
        "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
        "repetition_penalty": args.repetition_penalty, "max_tokens": args.max_tokens,
    }


def validate_args(args: argparse.Namespace) -> None:
    if args.max_tokens < 1:
        raise DistillError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    if args.n < 1:
        raise DistillError(f"--n must be >= 1, got {args.n}")
    if args.chunk_size < 1:
        raise DistillError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.data_parallel_size < 1:
        raise DistillError(f"--data-parallel-size must be >= 1, got {args.data_parallel_size}")
    if not (0.0 < args.top_p <= 1.0):
        raise DistillError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.temperature < 0:
        raise DistillError(f"--temperature must be >= 0, got {args.temperature}")
    args.chat_template_kwargs_dict = json_object(args.chat_template_kwargs, "--chat-template-kwargs", DistillError)
    if args.shard is not None:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise DistillError(f"--shard {args.shard!r}: expected I/N, e.g. 0/4") from None
        if not (n >= 1 and 0 <= i < n):
            raise DistillError(f"--shard {args.shard!r}: need 0 <= I < N")
        args.shard_tuple = (i, n)
    else:
        args.shard_tuple = None
    out = Path(args.out)
    if out.is_dir():
        raise DistillError(f"--out {out} is a directory")
    for spec in args.prompts:
        path = spec if os.path.exists(spec) else spec.rsplit(":", 1)[0]
        if os.path.exists(path) and os.path.exists(out) and os.path.samefile(path, out):
            raise DistillError(f"--out {out} is one of the prompt files")


# ------------------------------------------------------------------------------------------ sidecar


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


def model_identity(model: str) -> str:
    return str(Path(model).resolve()) if Path(model).exists() else model


def model_weights(model: str) -> str | None:
    """Fingerprint of a local checkpoint's main-model weights (None for a hub id): a resumed run is checked against
    the weights, not the path, so a corpus committed from one checkout resumes from another."""
    from training.checkpoint_io import CheckpointError, main_weights_fingerprint

    if not (Path(model) / "config.json").is_file():
        return None
    try:
        return main_weights_fingerprint(Path(model))
    except (CheckpointError, OSError, ValueError):
        return None


def check_or_write_meta(out: Path, meta: dict) -> None:
    """Refuse to append to an output produced by different settings; write the sidecar otherwise."""
    mp = meta_path(out)
    has_data = out.exists() and out.stat().st_size > 0
    if has_data:
        if not mp.exists():
            raise DistillError(
                f"{out} exists but has no sidecar {mp.name}: it was not written by training.distill "
                "(or the sidecar was removed); refusing to append. Choose another --out."
            )
        try:
            old = json.loads(mp.read_text())
        except json.JSONDecodeError as e:
            raise DistillError(f"{mp}:{e.lineno}: sidecar is not valid JSON ({e.msg})") from None
        # a sidecar that records the weights is matched on them, not on where the checkpoint lies
        by_weights = bool(old.get("model_weights") and meta.get("model_weights"))
        fields = [k for k in COMPARED_FIELDS if not (by_weights and k == "model")] + ["model_weights"] * by_weights
        diffs = [
            f"{k}: existing {json.dumps(old.get(k))} vs now {json.dumps(meta.get(k))}"
            for k in fields
            if old.get(k) != meta.get(k)
        ]
        if diffs:
            raise DistillError(
                f"{out} was written by a different run (see {mp.name}); refusing to mix outputs:\n  "
                + "\n  ".join(diffs)
                + "\nUse a new --out, or repeat the original settings to resume."
            )
        if meta.get("model_weights") and not old.get("model_weights"):  # an older sidecar learns the weights
            atomic_write(mp, json.dumps({**old, "model_weights": meta["model_weights"]}, indent=2, ensure_ascii=False) + "\n")
        return
    atomic_write(mp, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------- resume


def recover_output(out: Path) -> set[str]:
    """Ids already finished; cuts a trailing partial line left by a killed run.

    Writes only ever append whole lines, so damage can only be at the end; a bad line elsewhere means the
    file was edited by hand, and is refused rather than silently dropped. Streams: outputs reach gigabytes.
    """
    done: set[str] = set()
    if not out.exists():
        return done
    good_end = 0
    bad_line = None
    with open(out, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # torn tail of an interrupted write
            if bad_line is not None:
                raise DistillError(f"{out}:{bad_line}: corrupted line in the middle of the output; refusing to resume")
            try:
                rid = json.loads(raw)["id"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                bad_line = lineno  # acceptable only as the last complete line (a write torn just before its newline)
                continue
            done.add(rid)
            good_end += len(raw)
    size = out.stat().st_size
    if good_end != size:
        print(f"[distill] {out}: dropping {size - good_end} bytes of a partial last line from an interrupted run", file=sys.stderr)
        with open(out, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return done


def append_lines(out: Path, records: list[dict]) -> None:
    """One write of complete lines, then fsync: a kill leaves at most one partial line at the end."""
    if not records:
        return
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with open(out, "ab") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------ chat


def load_tokenizer(args: argparse.Namespace):
    from transformers import AutoTokenizer

    name = args.tokenizer or args.model
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=bool(args.trust_remote_code))
    except Exception as e:  # noqa: BLE001 - report which tokenizer failed and why, before any engine start
        raise DistillError(f"cannot load the tokenizer from {name}: {e}") from None


@dataclass
class Renderer:
    """Messages → prompt token ids, with the chat template or (documented fallback) raw text."""

    tokenizer: object
    raw: bool
    template_kwargs: dict = field(default_factory=dict)

    def __call__(self, messages: list[dict]) -> list[int]:
        if self.raw:
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
            return self.tokenizer(text, add_special_tokens=True)["input_ids"]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template_kwargs
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def make_renderer(tokenizer, args: argparse.Namespace) -> Renderer:
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if not has_template and not args.allow_raw_prompts:
        where = args.tokenizer or args.model
        raise DistillError(
            f"{where}: the tokenizer has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); add one, or pass --allow-raw-prompts to feed prompts as plain text"
        )
    return Renderer(tokenizer, raw=not has_template, template_kwargs=args.chat_template_kwargs_dict)


# ------------------------------------------------------------------------------------------ work


@dataclass
class WorkItem:
    id: str
    sample: int
    conv: Conversation


def make_work(convs: list[Conversation], n: int, shard: tuple[int, int] | None) -> list[WorkItem]:
    items = []
    for c in convs:
        for k in range(n):
            wid = c.id if n == 1 else f"{c.id}#s{k}"
            if shard is not None:
                h = int(hashlib.sha1(wid.encode()).hexdigest()[:8], 16)
                if h % shard[1] != shard[0]:
                    continue
            items.append(WorkItem(wid, k, c))
    return items


def request_seed(seed: int, item_id: str, turn: int) -> int:
    """Stable per request, so a resumed or re-batched run draws the same samples."""
    return int(hashlib.sha1(f"{seed}:{item_id}:{turn}".encode()).hexdigest()[:8], 16)


def offline_engine(llm_kwargs: dict):
    """vLLM's offline engine for batch generation, with this machine's CPU defaults (every core computing, a
    fixed KV cache, whole-prompt prefill) where the user did not decide otherwise."""
    from vllm import LLM

    from vllm_fastmtp.integration.cpu_fixes import cpu_engine_workarounds

    use_all_cpu_cores()
    default_cpu_kv_cache(llm_kwargs)
    return LLM(**{**cpu_engine_workarounds(), **llm_kwargs})


class ChunkGenerator:
    """Owns one vLLM engine; turns a chunk of work items into finished records."""

    def __init__(
        self, llm_kwargs: dict, sampling: dict, seed: int, renderer: Renderer, record_base: dict,
        turn_progress: bool = False, after_cut: str = "stop",
    ):
        self.llm = offline_engine(llm_kwargs)
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.sampling, self.extra_args = sampling, None
        if llm_kwargs.get("logits_processors"):
            from vllm_fastmtp.integration.sampling import LOGITS_PROCESSOR, split_top_k_top_p

            if LOGITS_PROCESSOR in llm_kwargs["logits_processors"]:
                self.sampling, self.extra_args = split_top_k_top_p(sampling)
        self.seed = seed
        self.follow_cut = after_cut == "continue"
        self.render = renderer
        self.record_base = record_base
        # vLLM's own bar per turn: shows movement (and tok/s) inside a large chunk.
        self.use_tqdm = partial(tqdm, leave=False, position=1, file=sys.stderr) if turn_progress else False

    def generate(self, items: list[WorkItem]) -> list[dict]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        state = {
            it.id: {"answers": [], "finish": [], "prompt_tokens": [], "completion_tokens": [], "stopped": False}
            for it in items
        }
        max_turns = max(len(it.conv.user_turns) for it in items)
        for turn in range(max_turns):
            prompts, params, owners = [], [], []
            for it in items:
                st = state[it.id]
                if st["stopped"] or turn >= len(it.conv.user_turns):
                    continue
                ids = self.render(it.conv.messages(st["answers"])[: _upto_user(it.conv, turn)])
                room = self.max_model_len - len(ids)
                if room < 1:
                    st["finish"].append("prompt_too_long")
                    st["prompt_tokens"].append(len(ids))
                    st["stopped"] = True
                    continue
                prompts.append(TokensPrompt(prompt_token_ids=ids))
                params.append(
                    SamplingParams(
                        n=1, seed=request_seed(self.seed, it.id, turn), extra_args=self.extra_args,
                        **{**self.sampling, "max_tokens": min(self.sampling["max_tokens"], room)},
                    )
                )
                owners.append(it)
            if not prompts:
                break
            outputs = self.llm.generate(prompts, params, use_tqdm=self.use_tqdm)
            for it, out in zip(owners, outputs):
                st = state[it.id]
                comp = out.outputs[0]
                st["answers"].append(comp.text)
                st["finish"].append(comp.finish_reason)
                st["prompt_tokens"].append(len(out.prompt_token_ids))
                st["completion_tokens"].append(len(comp.token_ids))
                if comp.finish_reason in INCOMPLETE_REASONS and not (self.follow_cut and comp.finish_reason == "length"):
                    st["stopped"] = True  # later turns would build on a cut-off answer (unless asked to)
        return [self._record(it, state[it.id]) for it in items]

    def _record(self, it: WorkItem, st: dict) -> dict:
        c = it.conv
        answered = len(st["answers"])
        messages = c.messages(st["answers"])[: _upto_user(c, answered - 1) + 1] if answered else (
            [{"role": "system", "content": c.system}] if c.system is not None else []
        )
        # Length of the conversation as a training sequence: the last answered turn's prompt plus its answer.
        total = st["prompt_tokens"][answered - 1] + st["completion_tokens"][answered - 1] if answered else 0
        return {
            "id": it.id,
            "source": c.source,
            "category": c.category,
            "messages": messages,
            "finish_reason": st["finish"][-1] if st["finish"] else None,
            "finish_reasons": st["finish"],
            "complete": answered == len(c.user_turns) and all(r not in INCOMPLETE_REASONS for r in st["finish"]),
            "prompt_tokens": st["prompt_tokens"],
            "completion_tokens": st["completion_tokens"],
            "total_tokens": total,
            "sample_index": it.sample,
            "origin": c.where,
            **({"orig_id": c.meta.get("question_id", c.meta.get("id"))} if c.meta else {}),
            **self.record_base,
        }


def use_all_cpu_cores() -> None:
    """On CPU, let the engine's compute use every core unless the user decided otherwise.

    vLLM's CPU backend reserves one core for its engine front-end by default (VLLM_CPU_NUM_OF_RESERVED_CPU,
    "reserve_cpu_num=1" in its log). On a 2-core machine that halves the matmul cores of a batch-generation job;
    measured on SmolLM2-135M bf16, 128 prompts: 165 -> 298 generated tok/s with no core reserved.
    """
    if not on_gpu() and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ:
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        print("[distill] CPU: VLLM_CPU_NUM_OF_RESERVED_CPU=0 (every core computes; set it to override)", file=sys.stderr)


CPU_KV_CACHE_GIB = 4


def default_cpu_kv_cache(llm_kwargs: dict) -> None:
    """On CPU, give the KV cache a fixed size (VLLM_CPU_KVCACHE_SPACE, GiB) unless the user sized it.

    Otherwise vLLM's CPU worker asks for --gpu-memory-utilization (0.92) of the NUMA node's memory and refuses to
    start when that much is not free: on these 24 GiB machines "Available memory on node 0 (11.03/12.59 GiB) ... is
    less than desired". 4 GiB holds ~186k bf16 tokens of SmolLM2-135M (182 sequences of 1,024).
    """
    sized = os.environ.get("VLLM_CPU_KVCACHE_SPACE") or {"gpu_memory_utilization", "kv_cache_memory_bytes"} & set(llm_kwargs)
    if not on_gpu() and not sized:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(CPU_KV_CACHE_GIB)
        print(f"[distill] CPU: VLLM_CPU_KVCACHE_SPACE={CPU_KV_CACHE_GIB} (GiB of KV cache; set it or "
              "--gpu-memory-utilization to override)", file=sys.stderr)


def _upto_user(conv: Conversation, turn: int) -> int:
    """Number of leading messages up to and including user turn ``turn`` (answers interleaved)."""
    return (1 if conv.system is not None else 0) + 2 * turn + 1


# ------------------------------------------------------------------------------------------ data parallel


def _dp_worker(rank: int, devices: list[str] | None, init: dict, tasks, results) -> None:
    """One engine replica: pulls chunks, returns records (the parent alone writes the output)."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(init["tokenizer"], trust_remote_code=init["trust_remote_code"])
        renderer = Renderer(tok, raw=init["raw"], template_kwargs=init["template_kwargs"])
        gen = ChunkGenerator(
            init["llm_kwargs"], init["sampling"], init["seed"], renderer, init["record_base"], after_cut=init["after_cut"]
        )
        results.put(("ready", rank, None))
        while True:
            chunk = tasks.get()
            if chunk is None:
                break
            results.put(("records", rank, gen.generate(chunk)))
    except BaseException as e:  # noqa: BLE001 - surfaced by the parent with the rank
        results.put(("error", rank, f"{type(e).__name__}: {e}"))


def _device_slices(dp: int, per_replica: int) -> list[list[str] | None]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        count = 0
    if count == 0:
        return [None] * dp  # CPU: nothing to pin
    ids = [d for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(count)]
    if len(ids) < dp * per_replica:
        raise DistillError(
            f"--data-parallel-size {dp} x {per_replica} GPUs per replica needs {dp * per_replica} GPUs, "
            f"{len(ids)} visible"
        )
    return [ids[r * per_replica : (r + 1) * per_replica] for r in range(dp)]


class DataParallelPool:
    def __init__(self, dp: int, init: dict):
        import multiprocessing as mp

        per = (init["llm_kwargs"].get("tensor_parallel_size") or 1) * (init["llm_kwargs"].get("pipeline_parallel_size") or 1)
        slices = _device_slices(dp, per)
        ctx = mp.get_context("spawn")
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        self.procs = [
            ctx.Process(target=_dp_worker, args=(r, slices[r], init, self.tasks, self.results), daemon=True)
            for r in range(dp)
        ]
        for p in self.procs:
            p.start()

    def run(self, chunks: list[list[WorkItem]]):
        """Yield (replica, records) as replicas finish chunks (order not kept: the file is keyed by id)."""
        import queue

        for c in chunks:
            self.tasks.put(c)
        for _ in self.procs:
            self.tasks.put(None)
        pending = len(chunks)
        while pending:
            try:
                kind, rank, payload = self.results.get(timeout=5)
            except queue.Empty:
                dead = [r for r, p in enumerate(self.procs) if not p.is_alive() and p.exitcode != 0]
                if dead:
                    raise DistillError(f"data-parallel replica(s) {dead} died (exit codes {[self.procs[r].exitcode for r in dead]})")
                continue
            if kind == "error":
                raise DistillError(f"data-parallel replica {rank} failed: {payload}")
            if kind == "records":
                pending -= 1
                yield rank, payload

    def close(self) -> None:
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


# ------------------------------------------------------------------------------------------ stats


def file_stats(out: Path) -> dict:
    per_cat: dict[str, Counter] = defaultdict(Counter)
    finish: Counter = Counter()
    records = 0
    if out.exists():
        with open(out, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                records += 1
                c = per_cat[r["category"]]
                c["records"] += 1
                c["complete"] += int(bool(r.get("complete")))
                c["prompt_tokens"] += r["prompt_tokens"][0] if r["prompt_tokens"] else 0
                c["completion_tokens"] += sum(r["completion_tokens"])
                c["total_tokens"] += r["total_tokens"]
                finish.update(r["finish_reasons"])
    return {"records": records, "finish_reasons": dict(finish), "per_category": {k: dict(v) for k, v in sorted(per_cat.items())}}


# ------------------------------------------------------------------------------------------ main


def prepare(args: argparse.Namespace):
    """Everything that can fail on bad input, before an engine starts."""
    validate_args(args)
    try:
        inputs, convs = load_inputs(args.prompts, fmt=args.format, default_category=args.default_category)
    except PromptFormatError as e:
        raise DistillError(str(e)) from None
    if args.system_prompt is not None:
        for c in convs:
            if c.system is None:
                c.system = args.system_prompt
    tokenizer = load_tokenizer(args)
    renderer = make_renderer(tokenizer, args)
    # Render one conversation per source now: a template that rejects the data fails here, not mid-run.
    firsts = {}
    for c in convs:
        firsts.setdefault(c.source, c)
    for c in firsts.values():
        try:
            renderer(c.messages()[:_upto_user(c, 0)])
        except Exception as e:  # noqa: BLE001 - template errors come in many types
            raise DistillError(f"{c.where}: the chat template cannot render this conversation: {e}") from None
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = json.dumps(template, sort_keys=True)
    meta = {
        "meta_version": META_VERSION,
        "model": model_identity(args.model),
        "model_weights": model_weights(args.model),
        "sampling": sampling_dict(args),
        "n": args.n,
        "seed": args.seed,
        "inputs": [{"source": i.source, "category": i.category} for i in inputs],
        "format": args.format,
        "default_category": args.default_category,
        "system_prompt": args.system_prompt,
        "raw_prompts": renderer.raw,
        "chat_template_sha1": hashlib.sha1(template.encode()).hexdigest() if template else None,
        "chat_template_kwargs": args.chat_template_kwargs_dict,
        # recorded only when not the default, so corpora written before the option existed still resume
        **({"after_cut": args.after_cut} if args.after_cut != "stop" else {}),
        # Informational only: parallelism and batching may change between resumed runs.
        "engine": {k: v for k, v in engine_kwargs(args).items() if k != "model"},
        "chunk_size": args.chunk_size,
        "data_parallel_size": args.data_parallel_size,
    }
    return convs, tokenizer, renderer, meta


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        convs, tokenizer, renderer, meta = prepare(args)
        llm_kwargs = engine_kwargs(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        check_or_write_meta(out, meta)
        done = recover_output(out)
    except DistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    work = make_work(convs, args.n, args.shard_tuple)
    if args.limit is not None:
        work = work[: args.limit]
    todo = [w for w in work if w.id not in done]
    skipped = len(work) - len(todo)
    print(f"[distill] {len(work)} conversations, {skipped} already in {out}, {len(todo)} to generate", file=sys.stderr)

    record_base = {"model": meta["model"], "sampling": {**meta["sampling"], "seed": args.seed}}
    started = gen_started = time.time()
    generated = completion_tokens = 0
    per_replica: Counter = Counter()
    if todo:
        chunks = [todo[i : i + args.chunk_size] for i in range(0, len(todo), args.chunk_size)]
        bar = tqdm(total=len(todo), unit="conv", desc="distill", disable=args.no_progress, file=sys.stderr)

        def consume(records):
            nonlocal generated, completion_tokens, gen_started
            append_lines(out, records)
            generated += len(records)
            completion_tokens += sum(sum(r["completion_tokens"]) for r in records)
            bar.update(len(records))
            bar.set_postfix(tok_s=f"{completion_tokens / max(time.time() - gen_started, 1e-9):.0f}")

        if args.data_parallel_size == 1:
            gen = ChunkGenerator(
                llm_kwargs, sampling_dict(args), args.seed, renderer, record_base, turn_progress=not args.no_progress,
                after_cut=args.after_cut,
            )
            gen_started = time.time()
            for chunk in chunks:
                consume(gen.generate(chunk))
        else:
            init = {
                "tokenizer": args.tokenizer or args.model, "trust_remote_code": bool(args.trust_remote_code),
                "raw": renderer.raw, "template_kwargs": renderer.template_kwargs, "llm_kwargs": llm_kwargs,
                "sampling": sampling_dict(args), "seed": args.seed, "record_base": record_base,
                "after_cut": args.after_cut,
            }
            pool = DataParallelPool(args.data_parallel_size, init)
            try:
                for rank, records in pool.run(chunks):
                    per_replica[rank] += len(records)
                    consume(records)
            except DistillError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            finally:
                pool.close()
        bar.close()

    elapsed = time.time() - started
    gen_elapsed = time.time() - gen_started
    stats = {
        "out": str(out),
        "run": {
            "conversations": len(work), "skipped_existing": skipped, "generated": generated,
            "completion_tokens": completion_tokens, "elapsed_s": round(elapsed, 3),
            "generation_s": round(gen_elapsed, 3),
            "completion_tokens_per_s": round(completion_tokens / gen_elapsed, 1) if generated else None,
            **({"conversations_per_replica": {str(k): v for k, v in sorted(per_replica.items())}} if per_replica else {}),
        },
        "file": file_stats(out),
        "meta": {k: meta[k] for k in ("model", "sampling", "n", "seed", "inputs")},
    }
    stats_path = Path(args.stats) if args.stats else out.with_name(out.name + ".stats.json")
    stats_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    print(f"[distill] wrote {generated} new conversations to {out}; stats in {stats_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
