"""The file handling every stage shares (distill, curate, split, prompts, vocabulary maps, benchmarks).

``atomic_write``: each stage writes outputs that a later stage, or a resumed run, trusts; a crash must leave the
old file or the new one, never half of one. ``read_jsonl``: the one line-numbered JSON-lines reader, so that every
stage reports a bad line the same way, as ``file:line: ...``.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def atomic_write(path: str | Path, content: str | bytes | Callable[[str], None]) -> Path:
    """Write ``content`` (UTF-8 text, bytes, or a callable that writes the temporary path it is given) to ``path``
    through a temporary file in the same directory, renamed into place; the file gets ordinary permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a crash cannot leave an empty new file
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary shareable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class JsonLinesError(ValueError):
    """A JSON-lines file that cannot be read as asked; the message starts with ``file:line``."""


def json_object(text: str, what: str, error: Callable[[str], Exception] = ValueError) -> dict:
    """A command-line argument that must be a JSON object (``--engine-args``, ``--chat-template-kwargs``)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise error(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def open_text(path: str | Path) -> IO[str]:
    """A UTF-8 text file, gzip-compressed when its name ends in ``.gz``."""
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_jsonl(
    path: str | Path,
    error: Callable[[str], Exception] = JsonLinesError,
    *,
    objects: bool = True,
    whole_lines: bool = False,
    arrays: bool = False,
) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSON-lines file (``.gz`` read transparently).

    Every problem is raised as ``error("file:line: ...")``, so each stage keeps its own exception type: a line
    that is not JSON; with ``objects``, a value that is not a JSON object; with ``whole_lines``, a last line
    without its newline (a write torn by a crash). With ``arrays``, a file that is one JSON array instead
    yields its items numbered from 1.
    """
    with open_text(path) as f:
        if arrays:
            head = f.read(1)
            while head.isspace():
                head = f.read(1)
            if head == "[":
                f.seek(0)
                try:
                    items = json.load(f)
                except json.JSONDecodeError as e:
                    raise error(f"{path}:{e.lineno}: malformed JSON array ({e.msg})") from None
                for i, item in enumerate(items, 1):
                    if objects and not isinstance(item, dict):
                        raise error(f"{path}:{i}: expected a JSON object, got {type(item).__name__}")
                    yield i, item
                return
            f.seek(0)
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            if whole_lines and not line.endswith("\n"):
                raise error(f"{where}: last line has no newline (partial write?); finish or resume the run that writes it")
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            if objects and not isinstance(value, dict):
                raise error(f"{where}: expected a JSON object, got {type(value).__name__}")
            yield lineno, value
