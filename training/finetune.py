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

import torch
import torch.nn as nn
from transformers import TrainingArguments

from training.data import ChatDataset, FinetuneDataError, NoAssistantTokensError, PadCollator, load_chat_jsonl
from vllm_fastmtp.conventions import CONFIG_KEY, DEFAULT_HIDDEN_STATE, HIDDEN_STATE_CHOICES, HIDDEN_STATE_FIELD
from vllm_fastmtp.mtp_head import (
    CHECKPOINT_PREFIX,
    MissingMTPHeadError,
    MTPHead,
    acceptance_counts,
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
    main_dtype: str = field(
        default="auto", metadata={"help": "Frozen main model dtype: auto (bf16 when training in bf16), float32, bfloat16."}
    )


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
    remove_unused_columns: bool = field(default=False)
    bf16: bool | None = field(default=None, metadata={"help": "Default: on when the hardware supports it."})
    ddp_find_unused_parameters: bool | None = field(default=False)

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
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


# ============================================================ checkpoint helpers
def _weight_files(model_dir: Path) -> tuple[dict[str, str], dict | None]:
    """{tensor name: shard file name} and the index dict (None for a single-file checkpoint)."""
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        return dict(index["weight_map"]), index
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise FinetuneConfigError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    from safetensors import safe_open

    with safe_open(str(single), "pt") as f:
        return {k: "model.safetensors" for k in f.keys()}, None


def read_head_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    wmap, _ = _weight_files(model_dir)
    names = [k for k in wmap if k.startswith(CHECKPOINT_PREFIX)]
    if not names:
        raise MissingMTPHeadError(
            f"{model_dir} has no MTP head (no '{CHECKPOINT_PREFIX}*' tensors). Pass --init_head last_layer to graft "
            "one initialised from the last decoder layer (training.graft), or use a MiMo-format checkpoint."
        )
    out = {}
    for shard in sorted({wmap[k] for k in names}):
        with safe_open(str(model_dir / shard), "pt") as f:
            for k in names:
                if wmap[k] == shard:
                    out[k] = f.get_tensor(k)
    return out


def load_main_model(model_dir: Path, dtype: torch.dtype):
    """The main model through transformers' Qwen2 classes (no remote code, no hub)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging

    cfg_dict = json.loads((model_dir / "config.json").read_text())
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("model_type", "auto_map", "architectures")}
    config = Qwen2Config(**cfg_dict)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the MTP tensors are "unexpected" for Qwen2ForCausalLM: that is intended
    try:
        model = Qwen2ForCausalLM.from_pretrained(str(model_dir), config=config, dtype=dtype, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


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
        "data": data_info,
        "steps": steps,
        "base_model": source,
        "trained_with": "training.finetune",
    }


def write_served_checkpoint(
    src_dir: Path, out_dir: Path, head_tensors: dict[str, torch.Tensor], record: dict
) -> Path:
    """Copy ``src_dir`` to ``out_dir`` with the head tensors replaced; main tensors are copied bit for bit.

    Shards without head tensors are copied as files; shards holding head tensors are rewritten with every
    other tensor taken over unchanged. Each head tensor keeps the source's dtype. config.json gains
    ``"fastmtp"``; the index (if any) is rewritten with the new total size.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if out_dir.resolve() == src_dir.resolve():
        raise FinetuneConfigError("serve_dir must differ from model_path (the source is never modified)")
    out_dir.mkdir(parents=True, exist_ok=True)
    wmap, index = _weight_files(src_dir)
    missing = set(head_tensors) - set(wmap)
    if missing:
        raise MissingMTPHeadError(f"{src_dir}: head tensors {sorted(missing)} not in the checkpoint")
    for item in src_dir.iterdir():
        if item.is_dir() or item.name.endswith(".safetensors") or item.name in ("config.json",):
            continue
        if item.name == "model.safetensors.index.json":
            continue
        shutil.copy2(item, out_dir / item.name)
    total = 0
    for shard in sorted(set(wmap.values())):
        names = [k for k, s in wmap.items() if s == shard]
        with safe_open(str(src_dir / shard), "pt") as f:
            meta = f.metadata() or {"format": "pt"}
            if not any(k in head_tensors for k in names):
                shutil.copy2(src_dir / shard, out_dir / shard)
                for k in names:
                    t = f.get_slice(k)
                    total += math.prod(t.get_shape()) * _dtype_size(t.get_dtype())
                continue
            tensors = {}
            for k in names:
                t = f.get_tensor(k)
                if k in head_tensors:
                    new = head_tensors[k]
                    if tuple(new.shape) != tuple(t.shape):
                        raise MissingMTPHeadError(f"{k}: trained shape {tuple(new.shape)} != {tuple(t.shape)}")
                    t = new.detach().to(device="cpu", dtype=t.dtype).contiguous()
                tensors[k] = t
                total += t.numel() * t.element_size()
        save_file(tensors, str(out_dir / shard), metadata=meta)
    if index is not None:
        index = dict(index)
        index["metadata"] = {**index.get("metadata", {}), "total_size": total}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    cfg = json.loads((src_dir / "config.json").read_text())
    cfg.setdefault("num_nextn_predict_layers", 1)
    cfg[CONFIG_KEY] = record
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    return out_dir


def _dtype_size(name: str) -> int:
    return {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}.get(
        name, 1
    )


def export_head_only(out_path: Path, head_tensors: dict[str, torch.Tensor], record: dict) -> Path:
    """The head alone: ``model.mtp_layers.0.*`` tensors, the fastmtp record in the safetensors metadata."""
    from safetensors.torch import save_file

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in head_tensors.items()},
        str(out_path),
        metadata={"format": "pt", CONFIG_KEY: json.dumps(record)},
    )
    out_path.with_suffix(".json").write_text(json.dumps({CONFIG_KEY: record}, indent=2))
    return out_path


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
    anchor = torch.zeros_like(input_ids, dtype=torch.bool)
    valid = loss_mask.bool() if attention_mask is None else loss_mask.bool() & attention_mask.bool()
    anchor[:, :-1] = valid[:, 1:]
    # every token the chain reads or is compared at must be real (not padding)
    if attention_mask is not None:
        am = attention_mask.bool()
        for k in range(1, num_steps + 1):
            anchor[:, : anchor.shape[1] - k] &= am[:, k:]
            anchor[:, anchor.shape[1] - k :] = False
    rows = [acceptance_counts(drafts[b : b + 1], greedy[b : b + 1], anchor[b : b + 1], num_steps) for b in range(len(input_ids))]
    # last column: anchors whose data token t_{i+1} is the main model's greedy token (1.0 -> the estimate is exact)
    match = torch.zeros_like(anchor)
    match[:, :-1] = greedy[:, :-1] == input_ids[:, 1:]
    match_counts = (match & anchor).sum(-1)
    return torch.cat([torch.stack(rows), match_counts[:, None]], dim=-1)


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
    if fa.num_steps < 1:
        raise FinetuneConfigError(f"num_steps (K) must be >= 1, got {fa.num_steps}")
    if not fa.beta > 0:
        raise FinetuneConfigError(f"beta must be > 0, got {fa.beta}")
    if fa.hidden_state not in HIDDEN_STATE_CHOICES:
        raise FinetuneConfigError(f"hidden_state must be one of {HIDDEN_STATE_CHOICES}, got {fa.hidden_state!r}")
    if not 0.0 <= fa.distill_weight <= 1.0:
        raise FinetuneConfigError(f"distill_weight must be in [0, 1], got {fa.distill_weight}")
    if fa.distill_loss not in ("kl", "soft_ce"):
        raise FinetuneConfigError(f"distill_loss must be 'kl' or 'soft_ce', got {fa.distill_loss!r}")
    if fa.distill_top_n < 1:
        raise FinetuneConfigError(f"distill_top_n must be >= 1, got {fa.distill_top_n}")
    if fa.overlong not in ("truncate", "drop"):
        raise FinetuneConfigError(f"overlong must be 'truncate' or 'drop', got {fa.overlong!r}")
    if fa.export not in ("full", "head", "both"):
        raise FinetuneConfigError(f"export must be 'full', 'head' or 'both', got {fa.export!r}")
    if not fa.model_path:
        raise FinetuneConfigError("--model_path is required")
    if not fa.train_file:
        raise FinetuneConfigError("--train_file is required")
    if not ta.output_dir:
        raise FinetuneConfigError("--output_dir is required")
    if not 0.0 <= fa.eval_fraction < 1.0:
        raise FinetuneConfigError(f"eval_fraction must be in [0, 1), got {fa.eval_fraction}")
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


def build(fa: FinetuneArguments, ta):
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
    return {
        "model_dir": model_dir,
        "tokenizer": tokenizer,
        "module": module,
        "train": ChatDataset(train),
        "eval": ChatDataset(eval_examples) if eval_examples else None,
        "data_info": data_info,
        "head_src": head_src,
    }


def run(fa: FinetuneArguments, ta) -> dict:
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    b = build(fa, ta)
    if b["eval"] is None and ta.eval_strategy != "no":
        raise FinetuneConfigError("eval_strategy is set but there is no eval data (eval_file or eval_fraction)")
    pad_id = b["tokenizer"].pad_token_id
    if pad_id is None:
        pad_id = b["tokenizer"].eos_token_id or 0
    trainer = Trainer(
        model=b["module"],
        args=ta,
        train_dataset=b["train"],
        eval_dataset=b["eval"],
        data_collator=PadCollator(pad_id),
        compute_metrics=compute_metrics if b["eval"] is not None else None,
    )
    resume = ta.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last", "latest"):
        resume = get_last_checkpoint(ta.output_dir)
        if resume is None:
            logger.warning("no checkpoint in %s to resume from: starting fresh", ta.output_dir)
    result = trainer.train(resume_from_checkpoint=resume or None)
    metrics = dict(result.metrics)
    if b["eval"] is not None:
        metrics.update(trainer.evaluate())
    steps = trainer.state.global_step
    outputs = {
        "metrics": metrics,
        "steps": steps,
        "world_size": ta.world_size,
        "eval_history": [h for h in trainer.state.log_history if "eval_accept_pos1" in h],
    }
    if trainer.is_world_process_zero():
        head = b["module"].head
        src_dtypes = {k: v.dtype for k, v in b["head_src"].items()}
        tensors = {k: v.to(src_dtypes[k]) for k, v in head.checkpoint_tensors().items()}
        record = fastmtp_record(fa, steps, b["data_info"], str(fa.model_path))
        record["eval"] = {k: v for k, v in metrics.items() if k.startswith("eval_")} or None
        if fa.export in ("full", "both"):
            serve_dir = Path(fa.serve_dir or Path(ta.output_dir) / "final")
            write_served_checkpoint(b["model_dir"], serve_dir, tensors, record)
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
