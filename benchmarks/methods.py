"""Benchmark methods are data: a name, an optional model path and a vLLM ``speculative_config`` template.

A method without ``num_speculative_tokens`` in its template is run once per K of the sweep; one with it fixed
runs once. ``none`` and ``mtp`` are the baselines every speedup is measured against.

``--method`` accepts a built-in name (``none``, ``mtp``, ``fastmtp``) or ``NAME=JSON`` with JSON
``{"model": PATH (optional), "speculative_config": {...} or null, "engine_args": {...} (optional)}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

BASELINE = "none"
VANILLA = "mtp"
BUILTIN = {
    "none": {"speculative_config": None},
    "mtp": {"speculative_config": {"method": "mtp"}},
    "fastmtp": {"speculative_config": {"method": "fastmtp"}},
}
MAX_K = 16


class MethodSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Method:
    name: str
    speculative_config: dict | None
    model: str | None = None
    engine_args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One engine configuration: a method at one K (K is None for no speculation)."""

    method: Method
    k: int | None

    @property
    def key(self) -> str:
        return self.method.name if self.k is None else f"{self.method.name}@K={self.k}"

    def speculative_config(self) -> dict | None:
        spec = self.method.speculative_config
        if spec is None:
            return None
        spec = dict(spec)
        if self.k is not None:
            spec["num_speculative_tokens"] = self.k
        return spec


def parse_method(arg: str) -> Method:
    if "=" not in arg:
        if arg not in BUILTIN:
            raise MethodSpecError(f"--method {arg!r}: unknown built-in; expected one of {sorted(BUILTIN)} or NAME=JSON")
        return _from_dict(arg, BUILTIN[arg], arg)
    name, raw = arg.split("=", 1)
    if not name:
        raise MethodSpecError(f"--method {arg!r}: empty name before '='")
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise MethodSpecError(f"--method {name}: the text after '=' is not valid JSON ({e})") from e
    return _from_dict(name, obj, arg)


def _from_dict(name: str, obj, arg: str) -> Method:
    if not isinstance(obj, dict):
        raise MethodSpecError(f"--method {name}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"model", "speculative_config", "engine_args"}
    if unknown:
        raise MethodSpecError(f"--method {name}: unknown field(s) {sorted(unknown)}; allowed: model, speculative_config, engine_args")
    spec = obj.get("speculative_config")
    if spec is not None and (not isinstance(spec, dict) or "method" not in spec):
        raise MethodSpecError(f"--method {name}: field speculative_config must be null or an object with a 'method'")
    k = (spec or {}).get("num_speculative_tokens")
    if k is not None and (not isinstance(k, int) or not 1 <= k <= MAX_K):
        raise MethodSpecError(f"--method {name}: num_speculative_tokens is {k!r}; expected an integer 1..{MAX_K}")
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        raise MethodSpecError(f"--method {name}: field model must be a path string")
    engine_args = obj.get("engine_args") or {}
    if not isinstance(engine_args, dict):
        raise MethodSpecError(f"--method {name}: field engine_args must be an object")
    return Method(name, spec, model, engine_args)


def expand(methods: list[Method], ks: list[int]) -> list[Job]:
    """Jobs in run order: the no-speculation baseline first (its outputs are the lossless reference)."""
    names = [m.name for m in methods]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise MethodSpecError(f"--method names must be unique; repeated: {sorted(dup)}")
    bad = [k for k in ks if not 1 <= k <= MAX_K]
    if bad:
        raise MethodSpecError(f"--k values {bad} out of range; expected integers 1..{MAX_K}")
    jobs: list[Job] = []
    for m in sorted(methods, key=lambda m: m.speculative_config is not None):
        if m.speculative_config is None:
            jobs.append(Job(m, None))
        elif "num_speculative_tokens" in m.speculative_config:
            jobs.append(Job(m, m.speculative_config["num_speculative_tokens"]))
        else:
            jobs.extend(Job(m, k) for k in ks)
    return jobs
