"""Reading and writing checkpoints: the weight map, the head's tensors, the frozen main model, the servable copy
with a new head, the head alone, a fingerprint of the main model's weights, and (for graft) every tensor of a
safetensors/.bin checkpoint and a sharded write.

One module so that finetune, the state cache and graft agree on names and layouts (``conventions.MTP_PREFIX``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import torch

from vllm_fastmtp.conventions import CONFIG_KEY, MTP_PREFIX
from training.mtp_head import CHECKPOINT_PREFIX, MissingMTPHeadError


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read or written as asked."""


def weight_map(model_dir: Path) -> tuple[dict[str, str], dict | None]:
    """{tensor name: shard file name} and the index dict (None for a single-file checkpoint)."""
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        return dict(index["weight_map"]), index
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise CheckpointError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    from safetensors import safe_open

    with safe_open(str(single), "pt") as f:
        return {k: "model.safetensors" for k in f.keys()}, None


def read_head_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """The MTP head's ``model.mtp_layers.0.*`` tensors (MissingMTPHeadError when there are none)."""
    wmap, _ = weight_map(model_dir)
    names = [k for k in wmap if k.startswith(CHECKPOINT_PREFIX)]
    if not names:
        raise MissingMTPHeadError(
            f"{model_dir} has no MTP head (no '{CHECKPOINT_PREFIX}*' tensors). Pass --init_head last_layer to graft "
            "one initialised from the last decoder layer (training.graft), or use a MiMo-format checkpoint."
        )
    return read_tensors(model_dir, names)


def load_main_config(model_dir: Path):
    """The checkpoint's config as transformers' Qwen2Config (MiMo is Qwen2 plus the MTP layer)."""
    from transformers import Qwen2Config

    cfg_dict = json.loads((Path(model_dir) / "config.json").read_text())
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("model_type", "auto_map", "architectures")}
    return Qwen2Config(**cfg_dict)


def load_main_model(model_dir: Path, dtype: torch.dtype):
    """The main model through transformers' Qwen2 classes (no remote code, no hub)."""
    from transformers import Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging

    config = load_main_config(model_dir)
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
        raise CheckpointError("serve_dir must differ from model_path (the source is never modified)")
    out_dir.mkdir(parents=True, exist_ok=True)
    wmap, index = weight_map(src_dir)
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


def read_tensors(model_dir: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors, read shard by shard (never the whole checkpoint)."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    wmap, _ = weight_map(model_dir)
    missing = [n for n in names if n not in wmap]
    if missing:
        raise CheckpointError(f"{model_dir}: tensors {missing} not in the checkpoint")
    out = {}
    for shard in sorted({wmap[n] for n in names}):
        with safe_open(str(model_dir / shard), "pt") as f:
            for n in names:
                if wmap[n] == shard:
                    out[n] = f.get_tensor(n)
    return out


def frozen_vocab_matrices(model_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(input embedding [V, H], lm_head weight [V, H]) of the main model; the same tensor when tied."""
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    wmap, _ = weight_map(model_dir)
    embed_name = "model.embed_tokens.weight"
    tied = bool(cfg.get("tie_word_embeddings")) or "lm_head.weight" not in wmap
    names = [embed_name] if tied else [embed_name, "lm_head.weight"]
    t = read_tensors(model_dir, names)
    return t[embed_name], t[embed_name] if tied else t["lm_head.weight"]


def main_weights_fingerprint(model_dir: Path) -> str:
    """sha256 over every main-model tensor (name, dtype, shape, bytes) and config.json without the fastmtp record.

    The MTP head's tensors are left out: a servable checkpoint written by finetune has the same fingerprint as
    its source, so main-model caches stay valid across heads. Reads every weight once (~1 s per GB).
    """
    from safetensors import safe_open

    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.pop(CONFIG_KEY, None)
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    wmap, _ = weight_map(model_dir)
    by_shard: dict[str, list[str]] = {}
    for name, shard in wmap.items():
        if not name.startswith(MTP_PREFIX):
            by_shard.setdefault(shard, []).append(name)
    digests = {}
    for shard, names in by_shard.items():
        with safe_open(str(model_dir / shard), "pt") as f:
            for n in names:
                t = f.get_tensor(n).contiguous()
                d = hashlib.sha256(t.view(torch.uint8).reshape(-1).numpy().tobytes() if t.numel() else b"")
                digests[n] = f"{t.dtype}:{tuple(t.shape)}:{d.hexdigest()}"
    for n in sorted(digests):
        h.update(f"{n}={digests[n]};".encode())
    return h.hexdigest()


def weight_files(model_dir: Path) -> list[Path]:
    """Every weight file of a Hugging Face checkpoint: *.safetensors, else pytorch_model*.bin."""
    st = sorted(model_dir.glob("*.safetensors"))
    if st:
        return st
    bins = sorted(model_dir.glob("pytorch_model*.bin"))
    if bins:
        return bins
    raise CheckpointError(f"{model_dir} has no *.safetensors or pytorch_model*.bin weight files")


def weight_names(model_dir: Path) -> set[str]:
    """Every tensor name, from safetensors headers (a .bin checkpoint has to be loaded to know its names)."""
    from safetensors import safe_open

    names: set[str] = set()
    for f in weight_files(model_dir):
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as sf:
                names.update(sf.keys())
        else:  # rarely used format; the names are only known once loaded
            names.update(torch.load(str(f), map_location="cpu", weights_only=True).keys())
    return names


def read_all_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every weight file."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for f in weight_files(model_dir):
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    tensors[k] = sf.get_tensor(k)
        else:
            tensors.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return tensors


def write_sharded(tensors: dict[str, torch.Tensor], out: Path, shard_bytes: int) -> None:
    """model.safetensors, or shards of at most ``shard_bytes`` plus model.safetensors.index.json."""
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(tensors):
        n = tensors[k].numel() * tensors[k].element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = tensors[k]
        size += n
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    wmap = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        wmap.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": wmap}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
