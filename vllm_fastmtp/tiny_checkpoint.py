"""Build small MiMo-format checkpoints on disk, for tests and offline demos.

Nothing can be downloaded here, so every test that needs real vLLM builds its model with this module:
a Qwen2 body with ``architectures=["MiMoForCausalLM"]`` and one MTP layer under ``model.mtp_layers.0.*``,
the exact layout of MiMo-7B and the published FastMTP checkpoint, only smaller. Sizes are parameters;
nothing in the product depends on them.

Weights are either random (``init="random"``) or hand-set so the model's behaviour is known in advance:

* ``init="counting"``: the main model always predicts ``token + 1``. Embeddings are one-hot (so
  ``hidden_size >= vocab_size``), every decoder block is a residual pass-through (``o_proj`` and
  ``down_proj`` zero) and ``lm_head[s] = embed[s - 1]``. Any prompt is continued by counting up.
* ``head="token"``: the MTP head ignores the hidden state and outputs the embedding of its input token;
  through the shared ``lm_head`` it drafts ``input_token + 1``. Right at draft step k only if step k is fed
  the token drafted at step k-1.
* ``head="hidden"``: the MTP head ignores its input token and outputs its input hidden state shifted one
  token up; it drafts ``t + 2`` from the hidden state of ``t``. Right at draft step k only if step k is fed
  the head's OWN output hidden state from step k-1 (feeding the main model's state again would repeat the
  step-1 draft).

The tokenizer is byte-level (256 byte tokens + ChatML specials), built with the ``tokenizers`` library,
so it handles any text, English or Chinese, without a download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class TinySpec:
    vocab_size: int = 384
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    max_position_embeddings: int = 2048
    init: str = "random"  # random | counting
    head: str = "random"  # random | token | hidden
    seed: int = 0
    std: float = 0.3
    dtype: str = "float32"
    rms_norm_eps: float = 1e-6


def build_byte_tokenizer(out_dir: Path, vocab_size: int) -> dict:
    """Write a byte-level BPE tokenizer (no merges) with ChatML specials; returns special-token ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_to_unicode = pre_tokenizers.ByteLevel.alphabet()
    # Stable order: ids 0..255 follow the byte value, as the ByteLevel alphabet maps them.
    ordered = sorted(byte_to_unicode, key=_byte_value)
    vocab = {ch: i for i, ch in enumerate(ordered)}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the byte tokenizer's {len(vocab)} tokens")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return {t: vocab[t] for t in SPECIAL_TOKENS}


def _byte_value(ch: str) -> int:
    """Inverse of GPT-2's bytes_to_unicode for one character."""
    o = ord(ch)
    if 33 <= o <= 126 or 161 <= o <= 172 or 174 <= o <= 255:
        return o
    # The remaining bytes were shifted to 256+ in order.
    remaining = [b for b in range(256) if not (33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255)]
    return remaining[o - 256]


def _random_layer(prefix: str, spec: TinySpec, g: torch.Generator, std: float) -> dict[str, torch.Tensor]:
    h, i = spec.hidden_size, spec.intermediate_size
    head_dim = h // spec.num_attention_heads
    kv = spec.num_key_value_heads * head_dim

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * std

    return {
        f"{prefix}.input_layernorm.weight": 1.0 + rnd(h) * 0.1,
        f"{prefix}.post_attention_layernorm.weight": 1.0 + rnd(h) * 0.1,
        f"{prefix}.self_attn.q_proj.weight": rnd(h, h),
        f"{prefix}.self_attn.q_proj.bias": rnd(h),
        f"{prefix}.self_attn.k_proj.weight": rnd(kv, h),
        f"{prefix}.self_attn.k_proj.bias": rnd(kv),
        f"{prefix}.self_attn.v_proj.weight": rnd(kv, h),
        f"{prefix}.self_attn.v_proj.bias": rnd(kv),
        f"{prefix}.self_attn.o_proj.weight": rnd(h, h),
        f"{prefix}.mlp.gate_proj.weight": rnd(i, h),
        f"{prefix}.mlp.up_proj.weight": rnd(i, h),
        f"{prefix}.mlp.down_proj.weight": rnd(h, i),
    }


def _silence_block(tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Make a decoder block a residual pass-through: its attention and MLP add exactly zero."""
    tensors[f"{prefix}.self_attn.o_proj.weight"].zero_()
    tensors[f"{prefix}.mlp.down_proj.weight"].zero_()


def make_state_dict(spec: TinySpec) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(spec.seed)
    v, h = spec.vocab_size, spec.hidden_size
    std = spec.std / (h**0.5) * 8 if spec.init == "random" else 0.02
    t: dict[str, torch.Tensor] = {}
    for layer in range(spec.num_hidden_layers):
        t.update(_random_layer(f"model.layers.{layer}", spec, g, std))
    mtp = "model.mtp_layers.0"
    t.update(_random_layer(mtp, spec, g, std))
    t[f"{mtp}.token_layernorm.weight"] = 1.0 + torch.randn(h, generator=g) * 0.1
    t[f"{mtp}.hidden_layernorm.weight"] = 1.0 + torch.randn(h, generator=g) * 0.1
    t[f"{mtp}.final_layernorm.weight"] = 1.0 + torch.randn(h, generator=g) * 0.1
    t[f"{mtp}.input_proj.weight"] = torch.randn(h, 2 * h, generator=g) * std
    t["model.norm.weight"] = 1.0 + torch.randn(h, generator=g) * 0.1

    if spec.init == "random":
        t["model.embed_tokens.weight"] = torch.randn(v, h, generator=g)
        t["lm_head.weight"] = torch.randn(v, h, generator=g) * std
    elif spec.init == "counting":
        if h < v:
            raise ValueError(f"init='counting' needs hidden_size >= vocab_size, got {h} < {v}")
        eye = torch.zeros(v, h)
        eye[torch.arange(v), torch.arange(v)] = 1.0
        t["model.embed_tokens.weight"] = eye
        t["lm_head.weight"] = torch.roll(eye, shifts=1, dims=0)  # lm_head[s] = embed[s - 1]
        for layer in range(spec.num_hidden_layers):
            _silence_block(t, f"model.layers.{layer}")
        t["model.norm.weight"] = torch.ones(h)
    else:
        raise ValueError(f"unknown init {spec.init!r}: expected 'random' or 'counting'")

    if spec.head != "random":
        if spec.init != "counting":
            raise ValueError("hand-set heads ('token', 'hidden') need init='counting'")
        _silence_block(t, mtp)
        for name in ("token_layernorm", "hidden_layernorm", "final_layernorm"):
            t[f"{mtp}.{name}.weight"] = torch.ones(h)
        proj = torch.zeros(h, 2 * h)  # input is cat([hidden_layernorm(h), token_layernorm(e)])
        if spec.head == "token":
            proj[:, h:] = torch.eye(h)
        elif spec.head == "hidden":
            shift = torch.zeros(h, h)  # maps one-hot(t) to one-hot(t + 1) for t < vocab_size
            idx = torch.arange(v)
            shift[(idx + 1) % v, idx] = 1.0
            proj[:, :h] = shift
        else:
            raise ValueError(f"unknown head {spec.head!r}: expected 'random', 'token' or 'hidden'")
        t[f"{mtp}.input_proj.weight"] = proj

    dtype = getattr(torch, spec.dtype)
    return {k: x.to(dtype).contiguous() for k, x in t.items()}


def make_config(spec: TinySpec, special_ids: dict[str, int]) -> dict:
    return {
        "architectures": ["MiMoForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.hidden_size // spec.num_attention_heads,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "max_window_layers": spec.num_hidden_layers,
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "num_nextn_predict_layers": 1,
        "bos_token_id": special_ids["<|endoftext|>"],
        "eos_token_id": special_ids["<|im_end|>"],
        "pad_token_id": special_ids["<|endoftext|>"],
        "torch_dtype": spec.dtype,
    }


def build_tiny_mimo(out_dir: str | Path, spec: TinySpec | None = None, **overrides) -> Path:
    """Write a complete checkpoint directory (config, tokenizer, safetensors) and return its path."""
    spec = spec or TinySpec()
    for k, val in overrides.items():
        if not hasattr(spec, k):
            raise TypeError(f"unknown TinySpec field {k!r}")
        setattr(spec, k, val)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    special = build_byte_tokenizer(out, spec.vocab_size)
    (out / "config.json").write_text(json.dumps(make_config(spec, special), indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"eos_token_id": special["<|im_end|>"], "bos_token_id": special["<|endoftext|>"]})
    )
    save_file(make_state_dict(spec), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    for f, default in TinySpec().__dict__.items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    args = vars(p.parse_args())
    out = args.pop("out_dir")
    print(build_tiny_mimo(out, TinySpec(**args)))


if __name__ == "__main__":
    main()
