"""A tiny model trained on its OWN generations: data for tests and the acceptance demo in docs/finetune.md.

    python -m training.tiny_demo OUT_DIR [--examples 400] [--max-new-tokens 48]

Writes OUT_DIR/model (a tiny random MiMo checkpoint whose output is confined to a small printable alphabet so its
greedy text round-trips through chat JSONL exactly) and OUT_DIR/{train,eval}.jsonl with the model's greedy
continuations of random prompts. Because the data are the main model's own greedy output, the offline
acceptance estimate on eval.jsonl is exact (the served chain and the teacher-forced chain coincide).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

ALPHABET = "abcdefghijklmnopqrstuvwxyz "


def build_demo_model(out_dir: Path, seed: int = 0, alphabet: str = ALPHABET, **spec) -> Path:
    """build_tiny_mimo(init='random') with lm_head rows outside ``alphabet`` zeroed (logit 0) and the rest scaled,
    so the model's greedy continuation stays inside the alphabet."""
    from safetensors.torch import load_file, save_file

    from vllm_fastmtp.tiny_checkpoint import build_tiny_mimo

    d = build_tiny_mimo(out_dir, init="random", seed=seed, **spec)
    t = load_file(str(d / "model.safetensors"))
    keep = torch.zeros(t["lm_head.weight"].shape[0], dtype=torch.bool)
    keep[[ord(c) for c in alphabet]] = True  # byte tokenizer: id == byte value
    w = t["lm_head.weight"].clone()
    w[~keep] = 0
    w[keep] *= 4.0
    t["lm_head.weight"] = w.contiguous()
    save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d


@torch.no_grad()
def self_generate(model_dir: Path, n: int, max_new_tokens: int, seed: int = 0, batch: int = 64) -> list[dict]:
    from transformers import AutoTokenizer, Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = Qwen2ForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    rng = random.Random(seed)
    prompts = [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randint(8, 24))).strip() or "a" for _ in range(n)
    ]
    rows = []
    for s in range(0, n, batch):
        chunk = prompts[s : s + batch]
        enc = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in chunk]
        enc = [e["input_ids"] if isinstance(e, dict) or hasattr(e, "keys") else e for e in enc]
        L = max(len(e) for e in enc)
        ids = torch.full((len(enc), L), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(enc), L), dtype=torch.long)
        for i, e in enumerate(enc):  # left padding for generation
            ids[i, L - len(e) :] = torch.tensor(e)
            att[i, L - len(e) :] = 1
        out = model.generate(
            input_ids=ids, attention_mask=att, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        for p, row in zip(chunk, out[:, L:].tolist()):
            text = tok.decode(row, skip_special_tokens=False)
            rows.append({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": text}]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--eval-examples", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.3, help="TinySpec.std of the random weights")
    a = ap.parse_args()
    out = Path(a.out_dir)
    d = build_demo_model(out / "model", seed=a.seed, std=a.std)
    rows = self_generate(d, a.examples + a.eval_examples, a.max_new_tokens, seed=a.seed + 1)
    for name, part in (("train", rows[: a.examples]), ("eval", rows[a.examples :])):
        with open(out / f"{name}.jsonl", "w") as f:
            for r in part:
                f.write(json.dumps(r) + "\n")
    print(out)


if __name__ == "__main__":
    main()
