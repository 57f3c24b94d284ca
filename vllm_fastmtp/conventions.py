"""What a FastMTP checkpoint records about how its head was trained, shared by training and serving.

The only train/serve choice that changes the head's inputs is which hidden state draft step 1 receives from the
main model: FastMTP's training code (and SGLang) use the state AFTER the final norm; vLLM's MiMo path hands the
state BEFORE it. `hidden_layernorm` does not cancel the difference (the final norm's per-channel weight survives),
so a head must be served the way it was trained. `training.finetune` writes the convention into config.json under
``"fastmtp"``; the plugin reads it back. Steps k >= 2 always receive the head's own post-`final_layernorm` output.
"""

from __future__ import annotations

from typing import Any, Mapping

MTP_ARCHITECTURE = "MiMoForCausalLM"  # the architecture name vLLM serves with an MTP layer
MTP_LAYERS_PREFIX = "model.mtp_layers."  # every MTP layer's tensors in a MiMo-format checkpoint
MTP_PREFIX = MTP_LAYERS_PREFIX + "0."  # the one MTP layer's tensors
CONFIG_KEY = "fastmtp"  # top-level key in the checkpoint's config.json
HIDDEN_STATE_FIELD = "hidden_state"
POST_NORM = "post_norm"  # main model's last hidden state after model.norm (FastMTP training, SGLang)
PRE_NORM = "pre_norm"  # before model.norm (what vLLM's `mtp` method feeds)
HIDDEN_STATE_CHOICES = (POST_NORM, PRE_NORM)
# Published FastMTP checkpoints carry no record and were trained on post-norm states; training.finetune
# trains that way by default too.
DEFAULT_HIDDEN_STATE = POST_NORM


def hidden_state_from_config(config: Mapping[str, Any] | Any, source: str = "config.json") -> str:
    """The convention recorded in a checkpoint config (dict or HF config object), else the default."""
    record = config.get(CONFIG_KEY) if isinstance(config, Mapping) else getattr(config, CONFIG_KEY, None)
    if record is None:
        return DEFAULT_HIDDEN_STATE
    if not isinstance(record, Mapping):
        raise ValueError(f"{source}: field '{CONFIG_KEY}' must be an object, got {type(record).__name__}")
    value = record.get(HIDDEN_STATE_FIELD, DEFAULT_HIDDEN_STATE)
    if value not in HIDDEN_STATE_CHOICES:
        raise ValueError(
            f"{source}: field '{CONFIG_KEY}.{HIDDEN_STATE_FIELD}' is {value!r}; expected one of {HIDDEN_STATE_CHOICES}"
        )
    return value
