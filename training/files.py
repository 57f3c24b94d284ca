"""File helpers every stage shares: an atomic write, and a JSONL reader that numbers its lines.

Each stage writes outputs that a later stage, or a resumed run, trusts; a crash must leave the old file or the new
one, never half of one. Each stage also reports bad input as ``file:line``; reading lines one way keeps those
numbers comparable across stages.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TextIO


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
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary shareable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class JSONLineError(ValueError):
    """A line that is not a JSON object; ``where`` is ``file:line``, ``reason`` what is wrong with it."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def jsonl_records(f: TextIO, path: str | Path) -> Iterator[tuple[str, str, dict]]:
    """(``file:line``, raw line, object) for every non-blank line of an open JSONL file; a line that is not a
    JSON object raises JSONLineError, which callers turn into their own stage's error."""
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise JSONLineError(where, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise JSONLineError(where, f"expected a JSON object, got {type(obj).__name__}")
        yield where, line, obj
