"""Writing vocabulary maps: the FR-Spec/SGLang list with a JSON sidecar, or EAGLE-3 ``d2t``/``t2d``.

Reading lives in ``vllm_fastmtp.draft_vocab`` (serving needs it without this package's build tools).
Writes go to a temporary file first and are renamed into place, so a failed or interrupted build never
leaves a half-written map next to a good sidecar.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from vllm_fastmtp.draft_vocab import VocabMapError, sidecar_path

FORMAT_LIST = "fr-spec-list"
FORMAT_D2T = "eagle3-d2t"


def parse_size(text: str | int) -> int:
    """``"32k"`` -> 32768, ``"1000"`` -> 1000."""
    if isinstance(text, int):
        return text
    t = str(text).strip().lower()
    try:
        n = int(t[:-1]) * 1024 if t.endswith("k") else int(t)
    except ValueError:
        raise VocabMapError(f"size {text!r}: expected an integer or NNk (e.g. 8k, 16k, 32k, 64k)") from None
    if n <= 0:
        raise VocabMapError(f"size {text!r}: must be positive")
    return n


def size_label(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a map is an ordinary shareable file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable(path: Path, *, force: bool) -> None:
    """Refuse, before any work, to overwrite an existing map or sidecar unless asked to."""
    for p in (path, sidecar_path(path)):
        if p.exists() and not force:
            raise VocabMapError(f"{p} exists; pass --force to overwrite it")
    if path.suffix not in (".pt", ".safetensors"):
        raise VocabMapError(f"{path}: output must end in .pt (FR-Spec list) or .safetensors (EAGLE-3 d2t)")


def save_map(path: str | Path, ids: Sequence[int], meta: dict, *, vocab_size: int) -> Path:
    """Write ids (descending frequency) and the sidecar. ``.safetensors`` -> EAGLE-3 d2t/t2d, else a list."""
    path = Path(path)
    ids = [int(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise VocabMapError(f"{path}: refusing to write duplicate ids")
    meta = dict(meta, num_ids=len(ids))
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        asc = torch.tensor(sorted(ids), dtype=torch.long)
        d2t = asc - torch.arange(asc.numel())
        t2d = torch.zeros(vocab_size, dtype=torch.bool)
        t2d[asc] = True
        meta["format"] = FORMAT_D2T
        _atomic_write(path, lambda tmp: save_file({"d2t": d2t, "t2d": t2d}, tmp))
    else:
        meta["format"] = FORMAT_LIST
        _atomic_write(path, lambda tmp: torch.save(ids, tmp))
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
