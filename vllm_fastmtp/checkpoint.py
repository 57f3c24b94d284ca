"""Checks that a checkpoint can be drafted from by its own MTP layer, before any engine work starts."""

from __future__ import annotations

import json
from pathlib import Path

from vllm_fastmtp.conventions import MTP_ARCHITECTURE, MTP_PREFIX
from vllm_fastmtp.options import FastMTPConfigError


class NoMTPLayerError(FastMTPConfigError):
    """The model has no MTP layer for fastmtp to run."""


def _weight_names(model_dir: Path) -> set[str] | None:
    """Tensor names of a local safetensors checkpoint (headers only), or None when it is not local safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    names: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            names.update(sf.keys())
    return names


def require_mtp_layer(architectures: list[str], num_nextn_predict_layers, model_path: str) -> None:
    hint = ("Graft a head first: python -m training.graft SRC OUT (or python -m training.finetune "
            "--init-head), which writes the model in MiMo format.")
    if MTP_ARCHITECTURE not in architectures:
        raise NoMTPLayerError(
            f"method 'fastmtp' needs a MiMo-format checkpoint with an MTP layer: {model_path}/config.json has "
            f"architectures {architectures}, expected [{MTP_ARCHITECTURE!r}]. {hint}"
        )
    if not isinstance(num_nextn_predict_layers, int) or num_nextn_predict_layers < 1:
        raise NoMTPLayerError(
            f"method 'fastmtp' needs an MTP layer: {model_path}/config.json field num_nextn_predict_layers is "
            f"{num_nextn_predict_layers!r}, expected an integer >= 1. {hint}"
        )
    local = Path(model_path)
    if local.is_dir():
        names = _weight_names(local)
        if names is not None and not any(n.startswith(MTP_PREFIX) for n in names):
            raise NoMTPLayerError(
                f"method 'fastmtp' needs MTP weights: {model_path} declares an MTP layer but has no tensors "
                f"named {MTP_PREFIX}*. {hint}"
            )
