"""Read prompt files in the common chat formats into one conversation skeleton.

Self-distillation regenerates every assistant turn, so a prompt is reduced to what the model must be
conditioned on: an optional system message and the user turns, in order. Reference answers found in the
input are dropped on purpose. Every problem is reported as ``file:line: ...`` while loading, so a bad file
fails before an engine is started.

Formats (one JSON object per line, or a JSON array of objects; ``.gz`` is read transparently):

* ``turns``         Spec-Bench / FastChat: ``{"turns": ["q1", "q2"], "category": ...}``
* ``messages``      OpenAI: ``{"messages": [{"role": "user", "content": ...}, ...]}``
* ``conversations`` ShareGPT: ``{"conversations": [{"from": "human", "value": ...}, ...]}``
* ``prompt``        plain: ``{"prompt": "...", "system": optional}``
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.files import read_jsonl

FORMATS = ("turns", "messages", "conversations", "prompt")

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
_OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class PromptFormatError(ValueError):
    """A prompt file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class InputSpec:
    """One ``--prompts`` argument: ``PATH[:CATEGORY]`` or ``hf:NAME[@SPLIT][:CATEGORY]``."""

    path: str
    category: str | None
    source: str

    @property
    def is_hf(self) -> bool:
        return self.path.startswith("hf:")


@dataclass
class Conversation:
    """What the model is conditioned on; assistant turns are produced by generation."""

    id: str
    source: str
    category: str
    where: str  # "file:line", for error messages and provenance
    user_turns: list[str]
    system: str | None = None
    meta: dict = field(default_factory=dict)

    def messages(self, answers: Iterable[str] = ()) -> list[dict]:
        """Chat messages with the given answers interleaved after the user turns they reply to."""
        out: list[dict] = []
        if self.system is not None:
            out.append({"role": "system", "content": self.system})
        answers = list(answers)
        for i, user in enumerate(self.user_turns):
            out.append({"role": "user", "content": user})
            if i < len(answers):
                out.append({"role": "assistant", "content": answers[i]})
        return out


def parse_input_spec(spec: str) -> InputSpec:
    """Split ``PATH[:CATEGORY]``; a path that exists as written wins over a category suffix."""
    if spec.startswith("hf:"):
        body, category = spec, None
        if spec.count(":") >= 2:
            body, category = spec.rsplit(":", 1)
        return InputSpec(path=body, category=category or None, source=body)
    path, category = spec, None
    if not os.path.exists(spec) and ":" in spec:
        path, category = spec.rsplit(":", 1)
        if not category:
            raise PromptFormatError(f"{spec}: empty category after ':'")
    if not os.path.isfile(path):
        raise PromptFormatError(f"{path}: prompt file not found")
    return InputSpec(path=path, category=category, source=Path(path).name)


def _iter_hf_records(spec: InputSpec) -> Iterator[tuple[int, object]]:
    try:
        import datasets
    except ImportError:
        raise PromptFormatError(
            f"{spec.path}: Hugging Face datasets need the `datasets` package (pip install datasets)"
        ) from None
    name = spec.path[len("hf:") :]
    name, _, split = name.partition("@")
    ds = datasets.load_dataset(name, split=split or "train")
    for i, row in enumerate(ds, 1):
        yield i, row


def detect_format(obj: dict) -> str | None:
    for fmt in FORMATS:
        if fmt in obj:
            return fmt
    return None


def _text(where: str, value: object, what: str) -> str:
    """Plain text from a string or an OpenAI list of content parts."""
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise PromptFormatError(f"{where}: {what} has a non-text content part ({kind!r}); only text is supported")
        value = "".join(parts)
    if not isinstance(value, str):
        raise PromptFormatError(f"{where}: {what} must be a string, got {type(value).__name__}")
    return value


def _from_role_list(where: str, items: object, fmt: str) -> tuple[str | None, list[str]]:
    if not isinstance(items, list):
        raise PromptFormatError(f"{where}: '{fmt}' must be a list, got {type(items).__name__}")
    system: str | None = None
    users: list[str] = []
    last = None
    for i, msg in enumerate(items):
        what = f"{fmt}[{i}]"
        if not isinstance(msg, dict):
            raise PromptFormatError(f"{where}: {what} must be an object, got {type(msg).__name__}")
        if fmt == "conversations" and "from" in msg:
            raw_role, content, table = msg.get("from"), msg.get("value"), _SHAREGPT_ROLES
        else:
            raw_role, content, table = msg.get("role"), msg.get("content"), _OPENAI_ROLES
        role = table.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise PromptFormatError(
                f"{where}: {what} has unsupported role {raw_role!r} (expected one of {sorted(table)})"
            )
        text = _text(where, content, what)
        if role == "system":
            if i != 0:
                raise PromptFormatError(f"{where}: {what} is a system message that is not the first message")
            system = text
        elif role == "user":
            if last == "user":
                raise PromptFormatError(f"{where}: {what} is a second user message in a row; merge them or add the reply")
            users.append(text)
        else:  # assistant: regenerated, so only its position matters
            if last not in ("user",):
                raise PromptFormatError(f"{where}: {what} is an assistant message that does not follow a user message")
        last = role
    return system, users


def conversation_from_record(
    obj: object, *, where: str, source: str, lineno: int, fmt: str = "auto", category: str | None = None,
    default_category: str = "general",
) -> Conversation:
    """Turn one parsed record into a Conversation, or raise PromptFormatError naming ``where``."""
    if not isinstance(obj, dict):
        raise PromptFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if fmt == "auto":
        fmt = detect_format(obj)
        if fmt is None:
            raise PromptFormatError(
                f"{where}: unknown format: none of the fields {', '.join(FORMATS)} is present "
                f"(found {', '.join(sorted(obj)) or 'no fields'})"
            )
    elif fmt not in FORMATS:
        raise PromptFormatError(f"unknown format {fmt!r}: expected auto or one of {', '.join(FORMATS)}")
    elif fmt not in obj:
        raise PromptFormatError(f"{where}: format {fmt!r} needs a '{fmt}' field (found {', '.join(sorted(obj))})")

    system: str | None = None
    if fmt == "turns":
        turns = obj["turns"]
        if not isinstance(turns, list):
            raise PromptFormatError(f"{where}: 'turns' must be a list of strings, got {type(turns).__name__}")
        users = [_text(where, t, f"turns[{i}]") for i, t in enumerate(turns)]
        if "system" in obj:
            system = _text(where, obj["system"], "system")
    elif fmt == "prompt":
        users = [_text(where, obj["prompt"], "prompt")]
        if obj.get("system") is not None:
            system = _text(where, obj["system"], "system")
    else:
        system, users = _from_role_list(where, obj[fmt], fmt)

    if not users:
        raise PromptFormatError(f"{where}: empty prompt: no user turn")
    for i, u in enumerate(users):
        if not u.strip():
            raise PromptFormatError(f"{where}: empty prompt: user turn {i + 1} is blank")

    cat = category or obj.get("category") or default_category
    if not isinstance(cat, str):
        raise PromptFormatError(f"{where}: 'category' must be a string, got {type(cat).__name__}")
    digest = hashlib.sha1(json.dumps([system, users], ensure_ascii=False).encode()).hexdigest()[:12]
    meta = {k: obj[k] for k in ("question_id", "id") if k in obj and isinstance(obj[k], (str, int))}
    return Conversation(
        id=f"{source}:{lineno}:{digest}",
        source=source,
        category=cat,
        where=where,
        user_turns=users,
        system=system,
        meta=meta,
    )


def read_prompts(spec: InputSpec, *, fmt: str = "auto", default_category: str = "general") -> list[Conversation]:
    """All conversations of one input; the first bad record raises with its file and line."""
    records = _iter_hf_records(spec) if spec.is_hf else read_jsonl(spec.path, PromptFormatError, objects=False, arrays=True)
    out = [
        conversation_from_record(
            obj, where=f"{spec.path}:{lineno}", source=spec.source, lineno=lineno, fmt=fmt,
            category=spec.category, default_category=default_category,
        )
        for lineno, obj in records
    ]
    if not out:
        raise PromptFormatError(f"{spec.path}: no prompts in file")
    return out


def load_inputs(
    specs: Iterable[str], *, fmt: str = "auto", default_category: str = "general"
) -> tuple[list[InputSpec], list[Conversation]]:
    """Parse every ``--prompts`` argument and read all files; source names must be unique (they form ids)."""
    parsed = [parse_input_spec(s) for s in specs]
    seen: dict[str, str] = {}
    for p in parsed:
        if p.source in seen:
            raise PromptFormatError(
                f"{p.path}: same file name as {seen[p.source]}; ids are built from file names, rename one of them"
            )
        seen[p.source] = p.path
    conversations: list[Conversation] = []
    for p in parsed:
        conversations.extend(read_prompts(p, fmt=fmt, default_category=default_category))
    return parsed, conversations
