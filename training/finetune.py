"""Fine-tune ONLY the shared MTP head of a MiMo-format checkpoint with the stock Hugging Face Trainer.

    python -m training.finetune --model_path CKPT --train_file data.jsonl --output_dir runs/ft [flags]
    python -m training.finetune config.yaml [flags that override the file]

Loss: sum_k alpha_k * CE_k over K recursive, teacher-forced draft steps (alpha_k ~ beta^(k-1)), assistant tokens
only, optionally mixed with self-distillation to the main model's top-N distribution. The main model is frozen
and never written; the servable output directory carries the source's main weights bit for bit, the trained
head under ``model.mtp_layers.0.*``, and ``config.json["fastmtp"]`` recording the hidden-state convention.
See docs/finetune.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from transformers import TrainingArguments

from training.checkpoint_io import (
    export_head_only,
    load_main_model,
    read_head_tensors,
    write_served_checkpoint,
)
from training.precision import bf16_native
from training.from_cache import CachedHeadModule, StatesCollator
from training.host_malloc import keep_freed_memory
from training.data import ChatDataset, FinetuneDataError, NoAssistantTokensError, PadCollator, load_chat_jsonl
from vllm_fastmtp.conventions import CONFIG_KEY, DEFAULT_HIDDEN_STATE, HIDDEN_STATE_CHOICES, HIDDEN_STATE_FIELD
from training.mtp_head import (
    LABEL_SOURCES,
    TRAIN_FORMS,
    CHECKPOINT_PREFIX,
    MissingMTPHeadError,
    MTPHead,
    acceptance_rows,
    batched_draft_chains,
    mtp_loss,
    step_weights,
)

logger = logging.getLogger("training.finetune")

__all__ = [
    "FinetuneArguments",
    "FinetuneConfigError",
    "MissingMTPHeadError",
    "NoAssistantTokensError",
    "FinetuneDataError",
    "main",
    "run",
]

HEAD_ONLY_FILE = "mtp_head.safetensors"
# --export_dtype: None keeps the starting head's dtype per tensor; the servable dir keeps its shards' dtypes (a
# bfloat16 export is rounded there too, so the served values are the shipped ones)
EXPORT_DTYPES = {"start": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


VOCAB_LOSSES = ("per_language", "union")  # how the loss runs over several draft maps (--vocab_loss)


class FinetuneConfigError(ValueError):
    """Invalid fine-tuning arguments (e.g. K < 1), raised before anything is trained."""


@dataclass
class FinetuneArguments:
    model_path: str | None = field(default=None, metadata={"help": "MiMo-format checkpoint directory (local)."})
    train_file: str | None = field(default=None, metadata={"help": "Chat JSONL ({'messages': [...]}) to train on."})
    eval_file: str | None = field(default=None, metadata={"help": "Held-out chat JSONL for loss + acceptance."})
    eval_fraction: float = field(
        default=0.0, metadata={"help": "Without eval_file: hold out this fraction of train_file for evaluation."}
    )
    max_eval_examples: int | None = field(default=256, metadata={"help": "Cap on held-out examples."})
    num_steps: int = field(default=3, metadata={"help": "K: recursive draft steps trained (and evaluated)."})
    beta: float = field(default=0.6, metadata={"help": "Step weights alpha_k proportional to beta^(k-1)."})
    hidden_state: str = field(
        default=DEFAULT_HIDDEN_STATE,
        metadata={"help": f"Main-model hidden state fed to step 1: one of {HIDDEN_STATE_CHOICES}."},
    )
    distill_weight: float = field(
        default=0.0,
        metadata={"help": "0 = pure CE on data tokens; 1 = pure self-distillation; between = mix."},
    )
    distill_loss: str = field(default="kl", metadata={"help": "'kl' or 'soft_ce' to the main model's top-N."})
    distill_top_n: int = field(default=20, metadata={"help": "Top-N tokens of the main model's distribution."})
    max_seq_len: int | None = field(
        default=None, metadata={"help": "Token limit per example (default and cap: max_position_embeddings)."}
    )
    overlong: str = field(default="truncate", metadata={"help": "Examples over max_seq_len: 'truncate' or 'drop'."})
    init_head: str | None = field(
        default=None,
        metadata={
            "help": "For a model without an MTP head: graft one with training.graft.graft_mtp_head(model_path, "
            "out_dir, init=INIT_HEAD) first (e.g. 'last_layer')."
        },
    )
    serve_dir: str | None = field(
        default=None, metadata={"help": "Where the servable checkpoint goes (default OUTPUT_DIR/final)."}
    )
    export: str = field(default="full", metadata={"help": "'full' (servable dir), 'head' (head only) or 'both'."})
    export_dtype: str = field(
        default="start",
        metadata={"help": "dtype of the exported head tensors: 'start' (the starting head's), bfloat16, float16 or "
                  "float32. bfloat16 halves a shipped head file; the servable dir then holds the same rounding, so "
                  "what is benchmarked is what ships."},
    )
    main_dtype: str = field(
        default="auto", metadata={"help": "Frozen main model dtype: auto (bf16 when training in bf16), float32, bfloat16."}
    )
    # ---- training from cached main-model states (training.cache_states): the fast path
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Train from the main model's cached states in this directory (built from train_file first "
                  "when missing or unfinished; reused across epochs and runs). No main model is loaded. Several "
                  "comma-separated caches train as one set (new data cached on its own, beside the old cache); "
                  "with train_file, give one file per cache, in the same order."},
    )
    eval_cache_dir: str | None = field(default=None, metadata={"help": "Cached states of eval_file (with cache_dir)."})
    cache_top_n: int = field(default=20, metadata={"help": "Main-model top-N log-probs kept in a cache built here."})
    label_source: str = field(
        default="data",
        metadata={"help": "CE target with cache_dir: 'data' (the data's next token) or 'greedy' (the main model's "
                  "greedy next token, what verification accepts)."},
    )
    draft_vocab: str | None = field(
        default=None,
        metadata={"help": "With cache_dir: comma-separated vocabulary maps (names or paths) the head will serve with; "
                  "the loss runs over them (--vocab_loss) and targets outside are skipped (counted)."},
    )
    vocab_loss: str = field(
        default="per_language",
        metadata={"help": "With several draft_vocab maps: 'per_language' (each conversation's CE over the map of its "
                  "prompt's language, chosen by the serving code's detector: what vLLM drafts from, and fewer rows "
                  "a step) or 'union' (over every map's ids, the form before the tenth session)."},
    )
    hidden_noise: float = field(
        default=0.0,
        metadata={"help": "With cache_dir: while training, add uniform noise U(-a, a) x each vector's RMS to the main "
                  "model's hidden states the head reads (EAGLE's feature augmentation, against memorising the "
                  "training contexts); evaluation reads them unchanged. 0 = off."},
    )
    keep_freed_memory: bool = field(
        default=True,
        metadata={"help": "Training on CPU with glibc: keep freed tensors' memory in the process for the next step "
                  "(mallopt, training.host_malloc) instead of faulting in fresh zeroed pages every step; resident "
                  "memory stays at its high-water mark."},
    )
    train_form: str = field(
        default="paper",
        metadata={"help": "Attention of steps k>1: 'paper' (plain causal over step k-1 outputs, FastMTP) or "
                  "'serving' (step-1 cache of earlier positions + the chain's own steps, as vLLM drafts)."},
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "Stop after this much wall-clock training (checked after each step), save a checkpoint and "
                  "export as usual; the same command with --resume_from_checkpoint last continues the planned "
                  "schedule. For runs longer than a session, or a lent GPU's fixed time."},
    )

    def __post_init__(self):
        """Every check of these fields alone, at parse time (as transformers' run_clm.py does)."""
        if self.num_steps < 1:
            raise FinetuneConfigError(f"num_steps (K) must be >= 1, got {self.num_steps}")
        if not self.beta > 0:
            raise FinetuneConfigError(f"beta must be > 0, got {self.beta}")
        if self.hidden_state not in HIDDEN_STATE_CHOICES:
            raise FinetuneConfigError(f"hidden_state must be one of {HIDDEN_STATE_CHOICES}, got {self.hidden_state!r}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise FinetuneConfigError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.distill_loss not in ("kl", "soft_ce"):
            raise FinetuneConfigError(f"distill_loss must be 'kl' or 'soft_ce', got {self.distill_loss!r}")
        if self.distill_top_n < 1:
            raise FinetuneConfigError(f"distill_top_n must be >= 1, got {self.distill_top_n}")
        if self.label_source not in LABEL_SOURCES:
            raise FinetuneConfigError(f"label_source must be one of {LABEL_SOURCES}, got {self.label_source!r}")
        if self.vocab_loss not in VOCAB_LOSSES:
            raise FinetuneConfigError(f"vocab_loss must be one of {VOCAB_LOSSES}, got {self.vocab_loss!r}")
        if self.train_form not in TRAIN_FORMS:
            raise FinetuneConfigError(f"train_form must be one of {TRAIN_FORMS}, got {self.train_form!r}")
        if not self.cache_dir:
            for name, default in (("label_source", "data"), ("draft_vocab", None), ("eval_cache_dir", None)):
                if getattr(self, name) != default:
                    raise FinetuneConfigError(f"{name} needs cache_dir (training from cached main-model states)")
        elif self.distill_weight > 0 and self.distill_top_n > self.cache_top_n:
            raise FinetuneConfigError(f"distill_top_n {self.distill_top_n} > cache_top_n {self.cache_top_n}")
        if not 0.0 <= self.hidden_noise < 1.0:
            raise FinetuneConfigError(f"hidden_noise must be in [0, 1), got {self.hidden_noise}")
        if self.hidden_noise and not self.cache_dir:
            raise FinetuneConfigError("hidden_noise needs cache_dir (training from cached main-model states)")
        if self.overlong not in ("truncate", "drop"):
            raise FinetuneConfigError(f"overlong must be 'truncate' or 'drop', got {self.overlong!r}")
        if self.export not in ("full", "head", "both"):
            raise FinetuneConfigError(f"export must be 'full', 'head' or 'both', got {self.export!r}")
        if self.export_dtype not in EXPORT_DTYPES:
            raise FinetuneConfigError(f"export_dtype must be one of {sorted(EXPORT_DTYPES)}, got {self.export_dtype!r}")
        if not self.model_path:
            raise FinetuneConfigError("--model_path is required")
        if not self.train_file and not self.cache_dir:
            raise FinetuneConfigError("--train_file (or --cache_dir holding its cached states) is required")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise FinetuneConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise FinetuneConfigError(f"max_train_minutes must be > 0, got {self.max_train_minutes}")


@dataclass
class FinetuneTrainingArguments(TrainingArguments):
    """TrainingArguments with the FastMTP paper's defaults."""

    output_dir: str | None = field(default=None, metadata={"help": "Trainer checkpoints and outputs."})
    learning_rate: float = field(default=5e-5)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup: steps, or a ratio in [0, 1)."})
    adam_beta1: float = field(default=0.9)
    adam_beta2: float = field(default=0.95)
    weight_decay: float = field(default=0.0)
    num_train_epochs: float = field(default=1.0)
    per_device_train_batch_size: int = field(default=4)
    per_device_eval_batch_size: int = field(default=4)
    logging_steps: float = field(default=10)
    save_strategy: str = field(default="steps")
    save_steps: float = field(default=500)
    save_total_limit: int | None = field(default=3)
    report_to: None | str | list[str] = field(default="none")
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={"help": "Trainer's sampler. Default here 'group_by_length' (batches of similar length): with "
                  "random batches a third of the head's work is padding (the third prompt set's cache: 67 percent real "
                  "tokens at batch 8, 99 percent grouped). 'random' is the stock Trainer's default.",
                  "choices": TrainingArguments.__dataclass_fields__["train_sampling_strategy"].metadata["choices"]},
    )
    remove_unused_columns: bool = field(default=False)
    bf16: bool | None = field(default=None, metadata={"help": "Default: on when the hardware supports it."})
    ddp_find_unused_parameters: bool | None = field(default=False)

    def __post_init__(self):
        if self.bf16 is None:  # bf16 autocast where the device computes bf16 natively (CUDA, AVX-512 BF16, AMX)
            on_cuda = torch.cuda.is_available() and not self.use_cpu
            self.bf16 = bf16_native("cuda" if on_cuda else "cpu")
            if self.bf16 and not on_cuda:
                self.use_cpu = True  # transformers accepts bf16 on CPU only with use_cpu (no GPU is used anyway)
        super().__post_init__()



def _training_arguments_class():
    return FinetuneTrainingArguments


# ============================================================ argument parsing
def parse_args(argv: list[str] | None = None):
    """(FinetuneArguments, TrainingArguments) from flags, or a JSON/YAML file followed by overriding flags."""
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((FinetuneArguments, _training_arguments_class()))
    if argv and argv[0].endswith((".json", ".yaml", ".yml")) and not argv[0].startswith("-"):
        cfg_path = Path(argv.pop(0))
        text = cfg_path.read_text()
        if cfg_path.suffix == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FinetuneConfigError(f"{cfg_path}: unknown keys {unknown}")
        parser.set_defaults(**values)
    fa, ta = parser.parse_args_into_dataclasses(args=argv)
    return fa, ta


def fastmtp_record(fa: FinetuneArguments, steps: int, data_info: dict, source: str) -> dict:
    if fa.distill_weight <= 0:
        loss = "ce"
    elif fa.distill_weight >= 1:
        loss = fa.distill_loss
    else:
        loss = f"ce+{fa.distill_loss}"
    return {
        HIDDEN_STATE_FIELD: fa.hidden_state,
        "K": fa.num_steps,
        "beta": fa.beta,
        "step_weights": [round(a, 6) for a in step_weights(fa.num_steps, fa.beta)],
        "loss": loss,
        "distill_weight": fa.distill_weight,
        "distill_top_n": fa.distill_top_n if fa.distill_weight > 0 else None,
        **({"hidden_noise": fa.hidden_noise} if fa.hidden_noise else {}),
        "data": data_info,
        "steps": steps,
        "base_model": source,
        "trained_with": "training.finetune",
    }


# ============================================================ the trained module
class MTPTrainingModule(nn.Module):
    """What the Trainer optimises: the head is the only registered submodule, so parameters(), state_dict(),
    DDP and Trainer checkpoints hold the head alone. The frozen main model rides along unregistered and is
    moved to the head's device on first use."""

    def __init__(self, main_model, head: MTPHead, fa: FinetuneArguments):
        super().__init__()
        self.head = head
        self.__dict__["main_model"] = main_model  # deliberately not a registered submodule
        self.fa = fa

    def _sync_main(self):
        dev = self.head.input_proj.weight.device
        if self.main_model.device != dev:
            self.main_model.to(dev)

    def forward(self, input_ids, attention_mask=None, loss_mask=None, return_loss: bool = True):
        self._sync_main()
        fa = self.fa
        if loss_mask is None:
            loss_mask = torch.ones_like(input_ids, dtype=torch.bool)
        loss, per_step = mtp_loss(
            self.main_model,
            self.head,
            input_ids,
            loss_mask.bool(),
            attention_mask,
            num_steps=fa.num_steps,
            beta=fa.beta,
            hidden_state=fa.hidden_state,
            distill_weight=fa.distill_weight,
            distill_loss=fa.distill_loss,
            distill_top_n=fa.distill_top_n,
            form=fa.train_form,
        )
        out = {"loss": loss}
        if not self.training:
            out["acceptance"] = per_row_acceptance(
                self.main_model, self.head, input_ids, attention_mask, loss_mask, fa.num_steps, fa.hidden_state
            )
        return out


def per_row_acceptance(main_model, head, input_ids, attention_mask, loss_mask, num_steps, hidden_state):
    """[B, K + 2]: anchors counted, anchors whose first k drafts all matched the main model's greedy tokens
    (k = 1..K), anchors whose data token equals the main model's greedy token.

    An anchor is a position i whose next token t_{i+1} is an assistant token (the token the main model "just
    sampled"); the head's chain is compared with the main model's greedy next tokens after t_{i+1}..t_{i+K}.
    """
    drafts, greedy = batched_draft_chains(main_model, head, input_ids, attention_mask, num_steps, hidden_state)
    return acceptance_rows(drafts, greedy, input_ids, attention_mask, loss_mask, num_steps)


def acceptance_metrics(counts: torch.Tensor | "np.ndarray") -> dict[str, float]:  # noqa: F821
    """Rates from summed [K + 2] counts (anchors, accepted 1..K, greedy matches):
    accept_pos{k} = P(drafts 1..k all accepted); data_greedy_match = share of anchors whose data token is the
    main model's greedy token (the estimate is exact on data that are the model's own greedy output)."""
    c = torch.as_tensor(counts).reshape(-1, counts.shape[-1]).sum(0).double()
    n = max(float(c[0]), 1.0)
    rates = [float(c[k]) / n for k in range(1, c.shape[0] - 1)]
    m = {f"accept_pos{k}": r for k, r in enumerate(rates, start=1)}
    m["accept_len"] = sum(rates)  # expected accepted draft tokens per step (excl. the bonus token)
    m["accept_anchors"] = float(c[0])
    m["data_greedy_match"] = float(c[-1]) / n
    return m


def compute_metrics(eval_pred) -> dict[str, float]:
    preds = eval_pred.predictions
    if isinstance(preds, (tuple, list)):
        preds = preds[0]
    return acceptance_metrics(torch.as_tensor(preds))


# ============================================================ driver
def validate(fa: FinetuneArguments, ta) -> None:
    """What FinetuneArguments cannot check alone (its own fields are checked in its ``__post_init__``): the
    training arguments and the files on disk."""
    if fa.eval_cache_dir and not fa.eval_file and not Path(fa.eval_cache_dir, "manifest.json").is_file():
        raise FinetuneConfigError("eval_cache_dir has no cache yet: pass eval_file to build it")
    if not ta.output_dir:
        raise FinetuneConfigError("--output_dir is required")
    if getattr(ta, "gradient_checkpointing", False):
        raise FinetuneConfigError("gradient_checkpointing is not supported: only the one-layer head trains")
    if not Path(fa.model_path).exists():
        raise FinetuneConfigError(f"model_path not found: {fa.model_path}")


def prepare_model_dir(fa: FinetuneArguments, ta) -> Path:
    """The MiMo-format directory to train from: model_path, or a grafted copy with --init_head."""
    src = Path(fa.model_path)
    if fa.init_head:
        out = Path(ta.output_dir) / "grafted_base"
        done = Path(ta.output_dir) / ".grafted_base.done"  # written by rank 0 once the graft is complete
        if not done.is_file():
            try:
                from training.graft import graft_mtp_head
            except ImportError as e:  # pragma: no cover - depends on the other module landing
                raise FinetuneConfigError(f"--init_head needs training.graft.graft_mtp_head: {e}") from e
            if _is_main_process():
                Path(ta.output_dir).mkdir(parents=True, exist_ok=True)
                if out.exists():  # a graft interrupted before completion
                    shutil.rmtree(out)
                res = graft_mtp_head(str(src), str(out), init=fa.init_head)
                done.write_text(str(Path(res) if res is not None else out))
            else:
                _wait_for(done)
        else:
            logger.info("reusing grafted base %s", out)
        return Path(done.read_text().strip())
    if src.is_file():
        raise MissingMTPHeadError(f"{src} is a file (GGUF?); pass --init_head to convert it and graft an MTP head")
    read_head_tensors(src)  # raises MissingMTPHeadError
    return src


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _wait_for(path: Path, timeout_s: float = 6 * 3600) -> None:
    import time

    t0 = time.time()
    while not path.is_file():
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"rank {os.environ.get('RANK')}: gave up waiting for {path}")
        time.sleep(2)


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


@dataclass
class Built:
    """Everything the Trainer needs, built and checked before training starts."""

    model_dir: Path
    tokenizer: Any
    module: nn.Module  # what the Trainer optimises: only the head's parameters require grad
    train: torch.utils.data.Dataset
    eval: torch.utils.data.Dataset | None
    collator: Any
    data_info: dict  # recorded in the exported checkpoint's "fastmtp" record
    head_src: dict[str, torch.Tensor]  # the starting head tensors (their dtypes are kept on export)


def build(fa: FinetuneArguments, ta) -> Built:
    """Everything up to (not including) training: checks, data, models. Raises the named errors."""
    from transformers import AutoTokenizer

    validate(fa, ta)
    model_dir = prepare_model_dir(fa, ta)
    head_src = read_head_tensors(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    max_pos = int(cfg.get("max_position_embeddings") or 1 << 30)
    max_len = min(fa.max_seq_len or max_pos, max_pos)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    if getattr(tokenizer, "chat_template", None) is None:
        raise FinetuneDataError(f"{model_dir}: tokenizer has no chat template")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    if fa.cache_dir:
        return _build_from_cache(fa, ta, model_dir, head_src, tokenizer, max_len, pad_id)
    train, train_rep = load_chat_jsonl(fa.train_file, tokenizer, max_len, fa.overlong)
    logger.warning("train data: %s", train_rep.summary())
    eval_examples, eval_rep = None, None
    if fa.eval_file:
        eval_examples, eval_rep = load_chat_jsonl(fa.eval_file, tokenizer, max_len, fa.overlong, fa.max_eval_examples)
        logger.warning("eval data: %s", eval_rep.summary())
    elif fa.eval_fraction > 0:
        n_eval = max(1, int(len(train) * fa.eval_fraction))
        if fa.max_eval_examples:
            n_eval = min(n_eval, fa.max_eval_examples)
        g = torch.Generator().manual_seed(ta.seed)
        perm = torch.randperm(len(train), generator=g).tolist()
        eval_examples = [train[i] for i in perm[:n_eval]]
        train = [train[i] for i in perm[n_eval:]]
        if not train:
            raise NoAssistantTokensError("eval_fraction leaves no training examples")

    if fa.main_dtype == "auto":
        main_dtype = torch.bfloat16 if ta.bf16 else torch.float32
    else:
        main_dtype = getattr(torch, fa.main_dtype)
    main_model = load_main_model(model_dir, main_dtype)
    head = MTPHead(main_model.config)
    head.load_checkpoint_tensors(head_src)
    head.float()
    module = MTPTrainingModule(main_model, head, fa)
    data_info = {
        "train_file": str(fa.train_file),
        "eval_file": str(fa.eval_file) if fa.eval_file else None,
        "train": train_rep.as_dict(),
        "eval": eval_rep.as_dict() if eval_rep else None,
        "max_seq_len": max_len,
        "overlong": fa.overlong,
    }
    return Built(model_dir=model_dir, tokenizer=tokenizer, module=module, train=ChatDataset(train),
                 eval=ChatDataset(eval_examples) if eval_examples else None, collator=PadCollator(pad_id),
                 data_info=data_info, head_src=head_src)


def _split_list(spec: str) -> list[str]:
    return [x.strip() for x in str(spec).split(",") if x.strip()]


def load_draft_vocab(spec: str, tokenizer, vocab_size: int, vocab_loss: str = "per_language"):
    """The vocabularies the loss runs over, and how a conversation's is chosen: ({language: ids}, choose) with
    ``per_language`` (each map's language from its sidecar; loader, checks, language detector and default are the
    serving code's ``DraftVocabConfig``, so a conversation trains over the map its requests are drafted over), or
    ({"union": sorted union of the maps' ids}, None). Every map is checked against the tokenizer and vocab size."""
    from vllm_fastmtp.draft_vocab import DraftVocabConfig
    from vocab_maps.format import (VocabMapError, load_vocab_map, read_sidecar, resolve_map_path, sidecar_path,
                                   tokenizer_fingerprint)

    names = _split_list(spec)
    if not names:
        raise FinetuneConfigError(f"draft_vocab {spec!r} names no map")
    try:
        if vocab_loss == "union" or len(names) == 1:
            fp = tokenizer_fingerprint(tokenizer)
            ids = [load_vocab_map(name, vocab_size=vocab_size, fingerprint=fp) for name in names]
            return {"union" if len(names) > 1 else "map": torch.unique(torch.cat(ids)).long()}, None
        by_lang: dict[str, str] = {}
        for name in names:
            path = resolve_map_path(name)
            lang = (read_sidecar(path) or {}).get("language")
            if not isinstance(lang, str) or not lang:
                raise FinetuneConfigError(
                    f"draft_vocab: {path} has no 'language' in its sidecar ({sidecar_path(path)}); the "
                    "per-language loss needs one per map (or pass --vocab_loss union)")
            if lang in by_lang:
                raise FinetuneConfigError(f"draft_vocab: {by_lang[lang]} and {path} are both '{lang}' maps; "
                                          "serving takes one map per language")
            by_lang[lang] = str(path)
        cfg = DraftVocabConfig.parse({"maps": by_lang})
        maps, detector = cfg.load(tokenizer, vocab_size)
    except VocabMapError as e:
        raise FinetuneConfigError(f"draft_vocab: {e}") from None
    return {lang: ids.long() for lang, ids in maps.items()}, lambda prompt_ids: cfg.language_for(detector, prompt_ids)


def _build_from_cache(fa, ta, model_dir: Path, head_src, tokenizer, max_len: int, pad_id: int) -> dict:
    """The fast path: datasets over cached main-model states; the module holds the head, the frozen embedding and
    the draft vocabulary's lm_head rows."""
    from training.cache_states import CacheKey, StateCacheError, build_cache, open_cache
    from training.checkpoint_io import frozen_vocab_matrices, load_main_config, main_weights_fingerprint

    def cache(data_file, cache_dir):
        kw = dict(hidden_state=fa.hidden_state, top_n=fa.cache_top_n, max_seq_len=max_len, overlong=fa.overlong)
        try:
            if data_file:
                return build_cache(model_dir, data_file, cache_dir, progress=not ta.disable_tqdm, **kw)
            # no data file to fingerprint: the cache must still be of this model and convention
            want = CacheKey(model=main_weights_fingerprint(model_dir), data="", hidden_state=fa.hidden_state,
                            top_n=0, compute_dtype="")
            return open_cache(cache_dir, expect=want, check_fields=("model", "hidden_state"))
        except StateCacheError as e:
            raise FinetuneConfigError(str(e)) from None

    dirs = _split_list(fa.cache_dir)
    files = _split_list(fa.train_file) if fa.train_file else [None] * len(dirs)
    if len(files) != len(dirs):
        raise FinetuneConfigError(f"train_file names {len(files)} file(s), cache_dir {len(dirs)} cache(s): "
                                  "give one train file per cache, in the same order")
    parts = [cache(f, d) for f, d in zip(files, dirs)]
    for d, part in zip(dirs, parts):
        if part.key.top_n < fa.distill_top_n and fa.distill_weight > 0:
            raise FinetuneConfigError(f"{d}: cache keeps top-{part.key.top_n}, distill_top_n is {fa.distill_top_n}")
    train = parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
    eval_ds = None
    if fa.eval_cache_dir:
        eval_ds = cache(fa.eval_file, fa.eval_cache_dir)
        if fa.max_eval_examples and len(eval_ds) > fa.max_eval_examples:
            eval_ds = torch.utils.data.Subset(eval_ds, range(fa.max_eval_examples))
    elif fa.eval_fraction > 0:
        n_eval = max(1, int(len(train) * fa.eval_fraction))
        if fa.max_eval_examples:
            n_eval = min(n_eval, fa.max_eval_examples)
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(ta.seed)).tolist()
        eval_ds = torch.utils.data.Subset(train, perm[:n_eval])
        train = torch.utils.data.Subset(train, perm[n_eval:])
    config = load_main_config(model_dir)
    embed, lm = frozen_vocab_matrices(model_dir)
    vocabs, choose = load_draft_vocab(fa.draft_vocab, tokenizer, lm.shape[0], fa.vocab_loss) if fa.draft_vocab \
        else (None, None)
    head = MTPHead(config)
    head.load_checkpoint_tensors(head_src)
    head.float()
    module = CachedHeadModule(
        head, embed.float(), lm.float(), vocabs, num_steps=fa.num_steps, beta=fa.beta, form=fa.train_form,
        label_source=fa.label_source, distill_weight=fa.distill_weight, distill_loss=fa.distill_loss,
        distill_top_n=fa.distill_top_n, choose=choose, hidden_noise=fa.hidden_noise,
    )
    subset = isinstance(train, torch.utils.data.Subset)
    data_info = {
        "train_file": str(fa.train_file) if fa.train_file else None,
        "cache_dir": str(fa.cache_dir),
        "cache_key": [dict(p.key.__dict__) for p in parts] if len(parts) > 1 else dict(parts[0].key.__dict__),
        "train_examples": len(train),
        "train_assistant_tokens": None if subset else sum(p.assistant_tokens() for p in parts),
        "eval_cache_dir": str(fa.eval_cache_dir) if fa.eval_cache_dir else None,
        "label_source": fa.label_source,
        "train_form": fa.train_form,
        "draft_vocab": fa.draft_vocab,
        "draft_vocab_size": {k: int(v.numel()) for k, v in vocabs.items()} if vocabs is not None else None,
        "vocab_loss": fa.vocab_loss if vocabs is not None and len(vocabs) > 1 else None,
        "max_seq_len": max_len,
        "overlong": fa.overlong,
    }
    return Built(model_dir=model_dir, tokenizer=tokenizer, module=module, train=train, eval=eval_ds,
                 collator=StatesCollator(pad_id), data_info=data_info, head_src=head_src)


def stop_after(minutes: float):
    """A Trainer callback that ends training (with a checkpoint, so a rerun resumes) once ``minutes`` of wall clock
    have passed since training began; the LR schedule stays the planned one, so chunks add up to one run."""
    import time

    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        start = None
        stopped_at_step = None

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            over = time.monotonic() - self.start >= minutes * 60
            if torch.distributed.is_available() and torch.distributed.is_initialized():  # every rank stops together
                flag = torch.tensor([int(over)], device=args.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                over = bool(flag.item())
            if over and state.global_step < state.max_steps:
                control.should_training_stop = control.should_save = True
                self.stopped_at_step = state.global_step

    return StopAfter()


def run(fa: FinetuneArguments, ta) -> dict:
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    if fa.keep_freed_memory and ta.device.type == "cpu" and keep_freed_memory():  # before a cache build, too
        logger.info("malloc: freed memory kept in the process (training.host_malloc)")
    b = build(fa, ta)
    if b.eval is None and ta.eval_strategy != "no":
        raise FinetuneConfigError("eval_strategy is set but there is no eval data (eval_file or eval_fraction)")
    stop = stop_after(fa.max_train_minutes) if fa.max_train_minutes else None
    trainer = Trainer(
        model=b.module,
        args=ta,
        train_dataset=b.train,
        eval_dataset=b.eval,
        data_collator=b.collator,
        compute_metrics=compute_metrics if b.eval is not None else None,
        callbacks=[stop] if stop else None,
    )
    resume = ta.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last", "latest"):
        resume = get_last_checkpoint(ta.output_dir)
        if resume is None:
            logger.warning("no checkpoint in %s to resume from: starting fresh", ta.output_dir)
    result = trainer.train(resume_from_checkpoint=resume or None)
    metrics = dict(result.metrics)
    if b.eval is not None:
        last = [h for h in trainer.state.log_history if "eval_loss" in h]
        if last and last[-1].get("step") == trainer.state.global_step:  # the final step was just evaluated
            metrics.update({k: v for k, v in last[-1].items() if k.startswith("eval_")})
        else:
            metrics.update(trainer.evaluate())
    steps = trainer.state.global_step
    outputs = {
        "metrics": metrics,
        "steps": steps,
        "world_size": ta.world_size,
        "eval_history": [h for h in trainer.state.log_history if "eval_accept_pos1" in h],
        "planned_steps": trainer.state.max_steps,
        "stopped_by_time": stop is not None and stop.stopped_at_step is not None,
    }
    if isinstance(b.module, CachedHeadModule):  # CE targets outside the draft vocabulary (this process)
        outputs["skipped_targets"] = b.module.skipped_targets
        outputs["used_targets"] = b.module.used_targets
    if trainer.is_world_process_zero():
        head = b.module.head
        dtype = EXPORT_DTYPES[fa.export_dtype]
        tensors = {k: v.to(dtype or b.head_src[k].dtype) for k, v in head.checkpoint_tensors().items()}
        record = fastmtp_record(fa, steps, b.data_info, str(fa.model_path))
        record["eval"] = {k: v for k, v in metrics.items() if k.startswith("eval_")} or None
        if fa.export in ("full", "both"):
            serve_dir = Path(fa.serve_dir or Path(ta.output_dir) / "final")
            write_served_checkpoint(b.model_dir, serve_dir, tensors, record)
            outputs["serve_dir"] = str(serve_dir)
            logger.warning("servable checkpoint: %s", serve_dir)
        if fa.export in ("head", "both"):
            path = Path(fa.serve_dir or Path(ta.output_dir) / "final") if fa.export == "head" else None
            head_path = (path or Path(ta.output_dir)) / HEAD_ONLY_FILE
            export_head_only(head_path, tensors, record)
            outputs["head_file"] = str(head_path)
            logger.warning("head only: %s", head_path)
        (Path(ta.output_dir) / "finetune_result.json").write_text(json.dumps(outputs, indent=2, default=str))
    _barrier()
    return outputs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fa, ta = parse_args(argv)
    run(fa, ta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
