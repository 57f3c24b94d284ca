"""Chat JSONL -> token ids + assistant-token loss mask, for MTP-head fine-tuning.

Each line: {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}, ...], ...}
(the format `python -m training.distill` writes). Text is rendered with the checkpoint's own chat template;
a token is an assistant token when its characters lie inside an assistant turn as the template renders it
(what the template adds after the turn's end-of-turn token, e.g. ChatML's trailing newline, is excluded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch


class FinetuneDataError(ValueError):
    """Training/eval data that cannot be used."""


class NoAssistantTokensError(FinetuneDataError):
    """No usable example has an assistant turn (nothing to train on)."""


@dataclass
class DataReport:
    path: str
    lines: int = 0
    kept: int = 0
    no_assistant: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    empty_after_truncation: int = 0
    bad_lines: int = 0
    assistant_tokens: int = 0
    total_tokens: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        return (
            f"{self.path}: {self.lines} lines, kept {self.kept} ({self.total_tokens} tokens, "
            f"{self.assistant_tokens} assistant); dropped: {self.no_assistant} without assistant turns, "
            f"{self.bad_lines} malformed, {self.dropped_too_long} too long, "
            f"{self.empty_after_truncation} without assistant tokens after truncation; truncated: {self.truncated}"
        )


@dataclass
class Example:
    input_ids: list[int]
    loss_mask: list[int]  # 1 where the token is an assistant token (a training target)


def _render(tokenizer, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character spans of its assistant turns."""
    full = _render(tokenizer, messages, False)
    spans = []
    for j, msg in enumerate(messages):
        if msg.get("role") != "assistant":
            continue
        before = _render(tokenizer, messages[:j], True) if j else _render(tokenizer, [], True)
        upto = _render(tokenizer, messages[: j + 1], False)
        if not full.startswith(upto) or not upto.startswith(before):
            # Template renders turns non-incrementally: fall back to locating the content itself.
            content = str(msg.get("content") or "")
            start = full.find(content, spans[-1][1] if spans else 0)
            if start < 0 or not content:
                continue
            spans.append((start, start + len(content)))
            continue
        start, end = len(before), len(upto)
        end = _trim_after_eos(tokenizer, full, start, end)
        if end > start:
            spans.append((start, end))
    return full, spans


def _trim_after_eos(tokenizer, text: str, start: int, end: int) -> int:
    """Cut the span right after the last end-of-turn token inside it (template whitespace follows it)."""
    eos = tokenizer.eos_token
    if eos:
        pos = text.rfind(eos, start, end)
        if pos >= 0:
            return pos + len(eos)
    return end


def tokenize_conversation(tokenizer, messages: list[dict]) -> Example | None:
    full, spans = assistant_char_spans(tokenizer, messages)
    if not spans:
        return None
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = []
    for a, b in offsets:
        inside = any(s <= a < e for s, e in spans) and b > a
        mask.append(1 if inside else 0)
    if not any(mask):
        return None
    return Example(input_ids=list(ids), loss_mask=mask)


def load_chat_jsonl(
    path: str | Path,
    tokenizer,
    max_len: int,
    overlong: str = "truncate",
    max_examples: int | None = None,
) -> tuple[list[Example], DataReport]:
    """Read and tokenise a chat JSONL file. Raises NoAssistantTokensError if nothing usable remains."""
    if overlong not in ("truncate", "drop"):
        raise FinetuneDataError(f"overlong must be 'truncate' or 'drop', got {overlong!r}")
    path = Path(path)
    if not path.is_file():
        raise FinetuneDataError(f"data file not found: {path}")
    rep = DataReport(path=str(path))
    out: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rep.lines += 1
            try:
                rec = json.loads(line)
                messages = rec["messages"]
                if not isinstance(messages, list):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                rep.bad_lines += 1
                continue
            if not any(isinstance(m, dict) and m.get("role") == "assistant" and m.get("content") for m in messages):
                rep.no_assistant += 1
                continue
            ex = tokenize_conversation(tokenizer, messages)
            if ex is None:
                rep.no_assistant += 1
                continue
            if len(ex.input_ids) > max_len:
                if overlong == "drop":
                    rep.dropped_too_long += 1
                    continue
                ex = Example(ex.input_ids[:max_len], ex.loss_mask[:max_len])
                rep.truncated += 1
                if not any(ex.loss_mask[1:]):
                    rep.empty_after_truncation += 1
                    continue
            out.append(ex)
            rep.kept += 1
            rep.total_tokens += len(ex.input_ids)
            rep.assistant_tokens += sum(ex.loss_mask)
            if max_examples is not None and rep.kept >= max_examples:
                break
    if not out:
        raise NoAssistantTokensError(
            f"{path}: no usable example with assistant tokens ({rep.summary()}). "
            "Training targets are assistant turns only: each line needs "
            '{"messages": [..., {"role": "assistant", "content": "..."}]}'
        )
    return out, rep


class ChatDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "loss_mask": ex.loss_mask}


@dataclass
class PadCollator:
    """Right-pads a batch; returns input_ids, attention_mask, loss_mask (bool)."""

    pad_id: int
    pad_to_multiple_of: int | None = None
    keys: tuple = field(default=("input_ids", "loss_mask"))

    def __call__(self, features):
        n = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            n = (n + m - 1) // m * m
        B = len(features)
        ids = torch.full((B, n), self.pad_id, dtype=torch.long)
        att = torch.zeros((B, n), dtype=torch.long)
        lm = torch.zeros((B, n), dtype=torch.bool)
        for b, f in enumerate(features):
            L = len(f["input_ids"])
            ids[b, :L] = torch.tensor(f["input_ids"], dtype=torch.long)
            att[b, :L] = 1
            lm[b, :L] = torch.tensor(f["loss_mask"], dtype=torch.bool)
        return {"input_ids": ids, "attention_mask": att, "loss_mask": lm}
