"""The one atomic write every stage uses (distill, curate, split, prompts, vocabulary maps).

Each stage writes outputs that a later stage, or a resumed run, trusts; a crash must leave the old file or the new
one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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
