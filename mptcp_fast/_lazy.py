"""A module imported on first use.

The engine's import path needs numpy only for its batch functions over arrays
(``wire.crypto``'s batches, ``wire.dss.expand_seq_array``). numpy costs about a tenth of
a second to import and starts BLAS threads that spin for a while after it; a program that
only runs the engine never pays that when those modules name numpy through
``lazy_module("numpy")``: the first attribute read imports it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule:
    """Stands for the module ``name``; reading an attribute imports it (once)."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r}, {state}>"


def lazy_module(name: str) -> Any:
    """``name``'s module, imported when an attribute of it is first read."""
    return _LazyModule(name)
