"""Give a plain Llama or Qwen2 checkpoint an MTP head, written in MiMo format so vLLM's `mtp` and the
fastmtp plugin can draft from it.

vLLM serves an MTP head only for a few architectures; MiMo's is a plain Qwen2 body plus
``model.mtp_layers.0.*``. A Llama body re-expressed as Qwen2 with ZERO q/k/v biases computes exactly the same
function (the two differ only in those biases), so any Llama/Qwen2 model can be carried into that layout
without changing a single output of the main model.

Head initialisation (``init``):

* ``last_layer`` (default): the head's decoder block is a copy of the main model's LAST decoder layer,
  ``final_layernorm`` is ``model.norm`` (the head's output is read by the same lm_head through the same norm
  weight as the main model's), ``hidden_layernorm`` and ``token_layernorm`` are ``model.norm`` too, and
  ``input_proj`` is ``[I | I]``: the block starts from "the main model's normalised state plus the next
  token's embedding", an input the copied layer can already read. See docs/demo_model.md for the measured
  alternatives.
* ``random``: the block and ``input_proj`` are random (std 0.02, biases zero), norms are ones.

Sources: a Hugging Face checkpoint directory (config.json + safetensors or ``pytorch_model*.bin``) or a GGUF
file (dequantised by transformers; needs the ``gguf`` and ``accelerate`` packages).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

from training.checkpoint_io import CheckpointError, read_all_tensors, weight_names, write_sharded
from training.cli import run_command
from vllm_fastmtp.conventions import CONFIG_KEY, MTP_ARCHITECTURE, MTP_LAYERS_PREFIX, MTP_PREFIX

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
INITS = ("last_layer", "random")
DTYPES = ("float32", "bfloat16", "float16")
# Files that are weights or configs we rewrite; everything else in a source directory (tokenizer, chat
# template, generation config, licence, README) is copied.
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".ckpt")
_NOT_COPIED_NAMES = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
# Llama-only config keys that mean nothing to Qwen2 (values they must have are checked first).
_DROPPED_KEYS = (
    "quantization_config", "attention_bias", "mlp_bias", "pretraining_tp", "head_dim", "transformers_version",
    # generic defaults transformers' to_dict() adds for GGUF sources
    "id2label", "label2id", "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward",
    "is_encoder_decoder", "problem_type",
)
SHARD_BYTES = 4 * 1024**3


class GraftError(ValueError):
    """The source cannot be grafted; the message names the file and field."""


class UnsupportedArchitectureError(GraftError):
    pass


class ExistingMTPHeadError(GraftError):
    pass


class OutputNotEmptyError(GraftError):
    pass


class HeadFileError(GraftError):
    """A trained head file does not fit the model; the message names the file and tensor."""


# ----------------------------------------------------------------------------------------------- source


def _resolve_source(source: Path) -> tuple[Path, Path | None]:
    """(directory, gguf file or None). A directory holding one .gguf and no config.json counts as GGUF."""
    if not source.exists():
        raise GraftError(f"source {source} does not exist: expected a checkpoint directory or a .gguf file")
    if source.is_file():
        if source.suffix.lower() != ".gguf":
            raise GraftError(f"source {source} is a file but not a .gguf file: expected a checkpoint directory or a .gguf file")
        return source.parent, source
    if (source / "config.json").is_file():
        return source, None
    ggufs = sorted(source.glob("*.gguf"))
    if len(ggufs) == 1:
        return source, ggufs[0]
    raise GraftError(
        f"source {source} has no config.json"
        + (f" and {len(ggufs)} .gguf files (name one)" if ggufs else " and no .gguf file")
    )


def _read_config(src_dir: Path, gguf: Path | None) -> dict:
    if gguf is None:
        try:
            return json.loads((src_dir / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise GraftError(f"{src_dir / 'config.json'} is not valid JSON: {e}") from e
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(src_dir), gguf_file=gguf.name).to_dict()


def _source_weight_names(src_dir: Path) -> set[str]:
    try:
        return weight_names(src_dir)
    except CheckpointError as e:
        raise GraftError(str(e)) from None


def _load_tensors(src_dir: Path, gguf: Path | None) -> dict[str, torch.Tensor]:
    if gguf is not None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(src_dir), gguf_file=gguf.name, dtype=torch.float32)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        return read_all_tensors(src_dir)
    except CheckpointError as e:
        raise GraftError(str(e)) from None


# ----------------------------------------------------------------------------------------------- checks


def check_source_config(cfg: dict, where: str, force: bool) -> None:
    """Refuse, before any work, anything Qwen2 cannot express exactly."""
    mt = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    has_head = (cfg.get("num_nextn_predict_layers") or 0) > 0 or MTP_ARCHITECTURE in archs
    if has_head and not force:
        raise ExistingMTPHeadError(
            f"{where}: the source already has an MTP head (architectures {archs}, num_nextn_predict_layers "
            f"{cfg.get('num_nextn_predict_layers')}); pass --force (force=True) to replace it"
        )
    if mt not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"{where}: field model_type is {mt!r} (architectures {archs}); supported: {list(SUPPORTED_MODEL_TYPES)}"
        )
    if mt == "llama":
        if cfg.get("attention_bias"):
            raise UnsupportedArchitectureError(
                f"{where}: field attention_bias is true; Qwen2 has no o_proj bias, so this Llama cannot be "
                "expressed exactly (expected attention_bias false)"
            )
        if cfg.get("mlp_bias"):
            raise UnsupportedArchitectureError(f"{where}: field mlp_bias is true; Qwen2's MLP has no biases (expected false)")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise GraftError(f"{where}: field {key} is {cfg.get(key)!r}; expected a positive integer")
    h, n = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim")
    if head_dim is not None and head_dim * n != h:
        raise UnsupportedArchitectureError(
            f"{where}: field head_dim is {head_dim} but hidden_size/num_attention_heads is {h}/{n}; vLLM's Qwen2 "
            "derives head_dim from hidden_size, so this model cannot be served as Qwen2"
        )


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputNotEmptyError(f"output {out} exists and is not an empty directory; choose a new path")


# ------------------------------------------------------------------------------------------- conversion


def qwen2_config(cfg: dict, dtype: str) -> dict:
    """The source config re-expressed as a MiMo-format Qwen2 config."""
    out = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _DROPPED_KEYS}
    n_layers = cfg["num_hidden_layers"]
    out.update(
        architectures=[MTP_ARCHITECTURE],
        model_type="qwen2",
        num_nextn_predict_layers=1,
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=n_layers,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        torch_dtype=dtype,
    )
    out.pop("dtype", None)
    if out.get("layer_types") is not None:
        out["layer_types"] = ["full_attention"] * n_layers
    return out


def _layer_keys(h: int, kv: int, inter: int) -> dict[str, tuple[int, ...]]:
    return {
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (h, h),
        "self_attn.q_proj.bias": (h,),
        "self_attn.k_proj.weight": (kv, h),
        "self_attn.k_proj.bias": (kv,),
        "self_attn.v_proj.weight": (kv, h),
        "self_attn.v_proj.bias": (kv,),
        "self_attn.o_proj.weight": (h, h),
        "mlp.gate_proj.weight": (inter, h),
        "mlp.up_proj.weight": (inter, h),
        "mlp.down_proj.weight": (h, inter),
    }


def _add_zero_biases(tensors: dict[str, torch.Tensor], n_layers: int) -> None:
    """Llama → Qwen2: q/k/v biases of zero, so every output is unchanged."""
    for i in range(n_layers):
        for p in ("q", "k", "v"):
            name = f"model.layers.{i}.self_attn.{p}_proj.bias"
            if name not in tensors:
                w = tensors[f"model.layers.{i}.self_attn.{p}_proj.weight"]
                tensors[name] = torch.zeros(w.shape[0], dtype=w.dtype)


def make_head(tensors: dict[str, torch.Tensor], cfg: dict, init: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The ``model.mtp_layers.0.*`` tensors for the chosen initialisation."""
    h = cfg["hidden_size"]
    last = f"model.layers.{cfg['num_hidden_layers'] - 1}."
    norm = tensors["model.norm.weight"].float()
    head: dict[str, torch.Tensor] = {}
    if init == "last_layer":
        for k, v in tensors.items():
            if k.startswith(last):
                head[MTP_PREFIX + k[len(last):]] = v.float().clone()
        for name in ("hidden_layernorm", "token_layernorm", "final_layernorm"):
            head[f"{MTP_PREFIX}{name}.weight"] = norm.clone()
        eye = torch.eye(h)
        head[f"{MTP_PREFIX}input_proj.weight"] = torch.cat([eye, eye], dim=1)
    elif init == "random":
        g = torch.Generator().manual_seed(seed)
        kv = tensors[f"{last}self_attn.k_proj.weight"].shape[0]
        inter = tensors[f"{last}mlp.gate_proj.weight"].shape[0]
        for k, shape in _layer_keys(h, kv, inter).items():
            if k.endswith("layernorm.weight"):
                head[MTP_PREFIX + k] = torch.ones(shape)
            elif k.endswith(".bias"):
                head[MTP_PREFIX + k] = torch.zeros(shape)
            else:
                head[MTP_PREFIX + k] = torch.randn(shape, generator=g) * 0.02
        for name in ("hidden_layernorm", "token_layernorm", "final_layernorm"):
            head[f"{MTP_PREFIX}{name}.weight"] = torch.ones(h)
        head[f"{MTP_PREFIX}input_proj.weight"] = torch.randn(h, 2 * h, generator=g) * 0.02
    else:
        raise GraftError(f"init is {init!r}; expected one of {list(INITS)}")
    return head


def load_head_file(path, expected: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict | None]:
    """A head-only file (``training.finetune --export head``): its tensors, checked name by name and shape by
    shape against the head this model needs, and its ``fastmtp`` record (safetensors metadata), if any."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        raise HeadFileError(f"{path}: expected an existing .safetensors head file (training.finetune --export head)")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in names}
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise HeadFileError(f"{path}: not a readable safetensors file ({e})") from e
    missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or unexpected:
        raise HeadFileError(f"{path}: head tensors do not match this model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise HeadFileError(f"{path}: tensor {k} has shape {tuple(tensors[k].shape)}; this model needs {tuple(v.shape)}")
    record = None
    if CONFIG_KEY in meta:
        try:
            record = json.loads(meta[CONFIG_KEY])
        except json.JSONDecodeError as e:
            raise HeadFileError(f"{path}: metadata field {CONFIG_KEY!r} is not JSON ({e})") from e
        if not isinstance(record, dict):
            raise HeadFileError(f"{path}: metadata field {CONFIG_KEY!r} must be a JSON object")
    return {k: v.float() for k, v in tensors.items()}, record


def _write_tokenizer(src_dir: Path, gguf: Path | None, out: Path, cfg: dict) -> None:
    if gguf is None:
        for f in src_dir.iterdir():
            if f.is_file() and f.name not in _NOT_COPIED_NAMES and not f.name.endswith(_NOT_COPIED_SUFFIXES):
                shutil.copy2(f, out / f.name)
        return
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src_dir), gguf_file=gguf.name)
    tok.save_pretrained(str(out))
    gen = {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if cfg.get(k) is not None}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))


def graft_mtp_head(
    source, out_dir, init: str = "last_layer", dtype: str | None = None, force: bool = False, head_file=None
) -> Path:
    """Write ``out_dir``: the source model in MiMo/Qwen2 layout with an MTP head; returns its path.

    ``dtype`` (float32 | bfloat16 | float16) defaults to the source's (float32 for GGUF, which is dequantised).
    ``force`` replaces an existing MTP head instead of refusing. ``head_file``: a trained head
    (``training.finetune --export head``) to use instead of ``init``; its ``fastmtp`` record (the hidden-state
    convention it was trained with) goes into config.json, so the plugin serves it as trained.
    """
    source, out = Path(source), Path(out_dir)
    if init not in INITS:
        raise GraftError(f"init is {init!r}; expected one of {list(INITS)}")
    if dtype is not None and dtype not in DTYPES:
        raise GraftError(f"dtype is {dtype!r}; expected one of {list(DTYPES)}")
    src_dir, gguf = _resolve_source(source)
    where = str(gguf) if gguf else str(src_dir / "config.json")
    _check_out_dir(out)
    cfg = _read_config(src_dir, gguf)
    check_source_config(cfg, where, force)
    if gguf is None and not force and any(n.startswith(MTP_LAYERS_PREFIX) for n in _source_weight_names(src_dir)):
        raise ExistingMTPHeadError(f"{src_dir}: weights named model.mtp_layers.* exist; pass --force to replace them")
    src_dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    out_dtype = dtype or (src_dtype if gguf is None and src_dtype in DTYPES else "float32")

    tensors = _load_tensors(src_dir, gguf)
    tensors = {k: v for k, v in tensors.items() if not k.startswith(MTP_LAYERS_PREFIX)}
    n_layers = cfg["num_hidden_layers"]
    missing = [k for k in ("model.embed_tokens.weight", "model.norm.weight", f"model.layers.{n_layers - 1}.self_attn.q_proj.weight") if k not in tensors]
    if missing:
        raise GraftError(f"{where}: weights {missing} are missing; expected a Llama/Qwen2 causal LM")
    _add_zero_biases(tensors, n_layers)
    tied = bool(cfg.get("tie_word_embeddings", False))
    if tied or "lm_head.weight" not in tensors:
        if not tied:
            raise GraftError(f"{where}: no lm_head.weight and tie_word_embeddings is false")
        # vLLM's MTP drafter loads lm_head.weight from the checkpoint (then shares the target's), so a tied
        # model still needs the tensor on disk; it equals the embedding, so tying stays exact.
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    head = make_head(tensors, cfg, init)
    record = None
    if head_file is not None:
        head, record = load_head_file(head_file, head)
    tensors.update(head)
    torch_dtype = getattr(torch, out_dtype)
    tensors = {k: v.to(torch_dtype).contiguous() for k, v in tensors.items()}

    out.mkdir(parents=True, exist_ok=True)
    try:
        _write_tokenizer(src_dir, gguf, out, cfg)
        write_sharded(tensors, out, SHARD_BYTES)
        out_cfg = qwen2_config(cfg, out_dtype)
        if record is not None:
            out_cfg[CONFIG_KEY] = record
        (out / "config.json").write_text(json.dumps(out_cfg, indent=2))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave a half-written checkpoint that looks complete
        raise
    return out


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="Hugging Face Llama/Qwen2 checkpoint directory, or a .gguf file")
    p.add_argument("out_dir", help="new (or empty) directory for the MiMo-format checkpoint")
    p.add_argument("--init", choices=INITS, default="last_layer")
    p.add_argument("--dtype", choices=DTYPES, default=None, help="default: the source's (float32 for GGUF)")
    p.add_argument("--force", action="store_true", help="replace an existing MTP head")
    p.add_argument("--head", default=None, help="trained head file (training.finetune --export head) instead of --init")
    a = p.parse_args(None if argv is None else list(argv))
    return run_command(
        lambda: print(graft_mtp_head(a.source, a.out_dir, init=a.init, dtype=a.dtype, force=a.force, head_file=a.head)),
        GraftError,
    )


if __name__ == "__main__":
    sys.exit(main())
