"""Run a patch right after a module is imported, so a process patches only the vLLM modules it really loads.

The API-server process loads the plugin too; hooking worker modules instead of importing them keeps GPU runner
code out of processes that never run a model.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Callable


class _HookLoader(importlib.abc.Loader):
    def __init__(self, loader, callback):
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.hooks: dict[str, Callable] = {}

    def find_spec(self, fullname, path, target=None):
        callback = self.hooks.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _HookLoader(spec.loader, callback)
                return spec
        return None


_FINDER = _PostImportFinder()


def after_import(module_name: str, callback: Callable) -> None:
    """Call ``callback(module)`` now if the module is loaded, else as soon as it has been imported."""
    if module_name in sys.modules:
        callback(sys.modules[module_name])
        return
    _FINDER.hooks[module_name] = callback
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
