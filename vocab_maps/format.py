"""The vocabulary-map format, owned here: reading, validating and writing maps and their JSON sidecars.

A map is the FR-Spec/SGLang list (``torch.save(list_of_ids)``), a 1-D integer tensor, or an EAGLE-3 ``d2t``/``t2d``
pair, next to a ``.json`` sidecar recording the tokenizer it was built for. The plugin loads maps through this
module at start-up (without the build tools in ``vocab_maps.build``); ``vocab_maps.build`` writes them with it.
Writes are atomic, so a failed or interrupted build never leaves a half-written map next to a good sidecar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

logger = logging.getLogger(__name__)

FINGERPRINT_VERSION = "v1"
SIDECAR_SUFFIX = ".json"
FORMAT_LIST = "fr-spec-list"
FORMAT_D2T = "eagle3-d2t"


class VocabMapError(ValueError):
    """A vocabulary map that cannot be used as given; the message names the file and the problem."""


# --------------------------------------------------------------------------------------------------
# Tokenizer fingerprint
# --------------------------------------------------------------------------------------------------


def _digest(items: Sequence[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for tok, idx in items:
        h.update(tok.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        h.update(str(idx).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """``v1-<regular>-<special>``: hashes of the regular and the added (special) token->id pairs.

    Two parts because the same BPE vocabulary ships with different special-token sets (Qwen2, Qwen2.5,
    MiMo); a map's ids stay meaningful when only the specials differ, so callers can compare the parts
    separately (see ``load_vocab_map``).
    """
    vocab: dict[str, int] = tokenizer.get_vocab()
    added = dict(tokenizer.get_added_vocab()) if hasattr(tokenizer, "get_added_vocab") else {}
    for tok in getattr(tokenizer, "all_special_tokens", []) or []:
        if tok in vocab:
            added.setdefault(tok, vocab[tok])
    regular = sorted(((t, i) for t, i in vocab.items() if t not in added), key=lambda x: x[1])
    special = sorted(added.items(), key=lambda x: x[1])
    return f"{FINGERPRINT_VERSION}-{_digest(regular)}-{_digest(special)}"


def _split_fingerprint(fp: str) -> tuple[str, str] | None:
    parts = fp.split("-")
    if len(parts) != 3 or parts[0] != FINGERPRINT_VERSION:
        return None
    return parts[1], parts[2]


# --------------------------------------------------------------------------------------------------
# Loading maps
# --------------------------------------------------------------------------------------------------


def sidecar_path(path: str | Path) -> Path:
    """``qwen2-en-32k.pt`` -> ``qwen2-en-32k.json``."""
    p = Path(path)
    return p.with_suffix(SIDECAR_SUFFIX) if p.suffix else p.with_name(p.name + SIDECAR_SUFFIX)


def _shipped_dir() -> Path:
    return Path(str(resources.files("vocab_maps")))


def shipped_maps() -> list[str]:
    """Short names of the maps installed with the package (``qwen2-en-32k``, ...)."""
    try:
        return sorted(p.stem for p in _shipped_dir().glob("*.pt"))
    except ModuleNotFoundError:
        return []


HUB_PREFIX = "hf://"


def _from_hub(spec: str) -> Path:
    """``hf://owner/repo/path/map.pt[@revision]`` -> a local copy (with its sidecar, if the repo has one)."""
    rest = spec[len(HUB_PREFIX) :]
    rest, _, revision = rest.partition("@")
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise VocabMapError(f"{spec!r}: expected hf://owner/repo/path/to/map.pt[@revision]")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download
    except ModuleNotFoundError:
        raise VocabMapError(f"{spec!r}: loading maps from the hub needs huggingface-hub (pip install huggingface-hub)") from None
    try:
        local = Path(hf_hub_download(repo_id, filename, revision=revision or None))
    except Exception as e:  # offline, missing repo/file, auth: all end the same way for the caller
        raise VocabMapError(
            f"{spec!r}: could not fetch {filename} from hub repo {repo_id} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}); offline? download it and pass a local path"
        ) from e
    try:
        hf_hub_download(repo_id, str(sidecar_path(filename)), revision=revision or None)
    except Exception:
        logger.info("%s: no sidecar in the repo; map checked without tokenizer metadata", spec)
    return local


def resolve_map_path(name_or_path: str | Path) -> Path:
    """A path on disk, a shipped map's short name (``"qwen2-en-32k"``) or ``hf://owner/repo/file.pt``."""
    if isinstance(name_or_path, str) and name_or_path.startswith(HUB_PREFIX):
        return _from_hub(name_or_path)
    p = Path(name_or_path)
    if p.exists():
        return p
    name = str(name_or_path)
    if "/" not in name and "\\" not in name:
        try:
            cand = _shipped_dir() / (name if name.endswith((".pt", ".safetensors")) else name + ".pt")
        except ModuleNotFoundError:
            cand = None
        if cand is not None and cand.exists():
            return cand
    raise VocabMapError(
        f"vocabulary map {name!r}: no such file, and not a shipped map name (shipped: {', '.join(shipped_maps()) or 'none'})"
    )


def _read_ids(p: Path) -> tuple[torch.Tensor, str]:
    """Raw ids from any supported format, and the format's name ('list', 'tensor', 'd2t')."""
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise VocabMapError(f"{p}: unreadable safetensors file ({e})") from e
        return _from_tensors(p, tensors)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise VocabMapError(
            f"{p}: refused to load: the file holds pickled objects beyond plain lists/tensors "
            f"(only weights_only-safe content is accepted): {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise VocabMapError(f"{p}: unreadable as a torch-saved map ({str(e).splitlines()[0]})") from e
    if isinstance(obj, Mapping):
        if not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise VocabMapError(f"{p}: a dict map must hold tensors (keys d2t/t2d/ids), got {sorted(obj)}")
        return _from_tensors(p, dict(obj))
    if isinstance(obj, torch.Tensor):
        return _check_int_tensor(p, obj, "tensor"), "tensor"
    if isinstance(obj, (list, tuple)):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in obj):
            bad = next(x for x in obj if not (isinstance(x, int) and not isinstance(x, bool)))
            raise VocabMapError(f"{p}: the list must hold integer token ids, found {type(bad).__name__} {bad!r}")
        return torch.tensor(list(obj), dtype=torch.long), "list"
    raise VocabMapError(f"{p}: expected a list of token ids, a tensor, or a d2t map; got {type(obj).__name__}")


def _check_int_tensor(p: Path, t: torch.Tensor, what: str) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise VocabMapError(f"{p}: {what} must be an integer tensor, got {t.dtype}")
    if t.dim() != 1:
        raise VocabMapError(f"{p}: {what} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.long)


def _from_tensors(p: Path, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, str]:
    if "d2t" in tensors:
        d2t = _check_int_tensor(p, tensors["d2t"], "d2t")
        # EAGLE-3: offsets over ascending draft ids, target id = draft id + d2t[draft id].
        return torch.arange(d2t.numel(), dtype=torch.long) + d2t, "d2t"
    for key in ("ids", "token_ids", "vocab"):
        if key in tensors:
            return _check_int_tensor(p, tensors[key], key), "tensor"
    raise VocabMapError(f"{p}: no 'd2t' or 'ids' tensor in the file (found {sorted(tensors)})")


def read_sidecar(path: str | Path) -> dict | None:
    """The map's metadata JSON, or None if there is none."""
    sc = sidecar_path(path)
    if not sc.exists():
        return None
    try:
        meta = json.loads(sc.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VocabMapError(f"{sc}: sidecar is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise VocabMapError(f"{sc}: sidecar must be a JSON object")
    return meta


def validate_ids(ids: torch.Tensor, *, vocab_size: int, where: str) -> None:
    """Raise ``VocabMapError`` for empty maps, out-of-range or duplicate ids."""
    if ids.numel() == 0:
        raise VocabMapError(f"{where}: the map is empty")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        raise VocabMapError(f"{where}: negative token id {lo}")
    if hi >= vocab_size:
        n_bad = int((ids >= vocab_size).sum())
        raise VocabMapError(f"{where}: token id {hi} >= vocab_size {vocab_size} ({n_bad} ids out of range)")
    uniq, counts = torch.unique(ids, return_counts=True)
    if uniq.numel() != ids.numel():
        dups = uniq[counts > 1][:5].tolist()
        raise VocabMapError(f"{where}: {ids.numel() - uniq.numel()} duplicate ids (e.g. {dups})")


def load_vocab_map(
    path: str | Path, *, vocab_size: int, fingerprint: str | None = None
) -> torch.LongTensor:
    """Load and validate a map; returns full-vocabulary ids (in file order: descending frequency).

    Accepts the FR-Spec/SGLang list (``torch.save(list_of_ids)``), a 1-D integer tensor, or an EAGLE-3
    ``d2t`` map (.pt dict or .safetensors). Loads with ``weights_only=True``: a file holding arbitrary
    pickled objects is refused. With ``fingerprint`` (from ``tokenizer_fingerprint``), a sidecar built for
    a different regular vocabulary is refused; differing special tokens only warn.
    """
    p = resolve_map_path(path)
    meta = read_sidecar(p)
    ids, _fmt = _read_ids(p)
    validate_ids(ids, vocab_size=vocab_size, where=str(p))
    if meta is not None:
        _check_sidecar(p, meta, ids, vocab_size=vocab_size, fingerprint=fingerprint)
    return ids


def _check_sidecar(p: Path, meta: dict, ids: torch.Tensor, *, vocab_size: int, fingerprint: str | None) -> None:
    sc = sidecar_path(p)
    tok = meta.get("tokenizer") or {}
    built_vs = tok.get("vocab_size")
    # The map's ids must exist in the serving vocabulary; a much smaller or larger tokenizer means another family.
    if isinstance(built_vs, int) and built_vs > vocab_size:
        raise VocabMapError(
            f"{sc}: map built for a tokenizer with {built_vs} tokens, but the model's vocab_size is {vocab_size}"
        )
    n = meta.get("num_ids")
    if isinstance(n, int) and n != ids.numel():
        raise VocabMapError(f"{sc}: sidecar says num_ids={n} but {p.name} holds {ids.numel()} ids (mismatched pair?)")
    built_fp = tok.get("fingerprint")
    if fingerprint is None or not built_fp:
        return
    a, b = _split_fingerprint(built_fp), _split_fingerprint(fingerprint)
    if a is None or b is None:
        if built_fp != fingerprint:
            raise VocabMapError(f"{sc}: tokenizer fingerprint {built_fp!r} does not match the model's {fingerprint!r}")
        return
    if a[0] != b[0]:
        raise VocabMapError(
            f"{sc}: map built for another tokenizer (regular-vocabulary fingerprint {a[0]} "
            f"from {tok.get('name', '?')!r}, the model's tokenizer has {b[0]})"
        )
    if a[1] != b[1]:
        logger.warning("%s: same regular vocabulary but different special tokens than the model's tokenizer", sc)


# --------------------------------------------------------------------------------------------------
# Writing maps
# --------------------------------------------------------------------------------------------------


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
    from training.files import atomic_write

    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        asc = torch.tensor(sorted(ids), dtype=torch.long)
        d2t = asc - torch.arange(asc.numel())
        t2d = torch.zeros(vocab_size, dtype=torch.bool)
        t2d[asc] = True
        meta["format"] = FORMAT_D2T
        atomic_write(path, lambda tmp: save_file({"d2t": d2t, "t2d": t2d}, tmp))
    else:
        meta["format"] = FORMAT_LIST
        atomic_write(path, lambda tmp: torch.save(ids, tmp))
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    atomic_write(sidecar_path(path), text)
    return path
