"""Choose between the compiled and the pure-Python implementation of the hot paths.

Each hot module has two twins with the same functions: ``mptcp_fast.<name>``
compiled from ``pyx/<name>.pyx`` and ``mptcp_fast._pure.<name>``. An API module
registers itself with :func:`register` and receives the active twin through its
bind callback. ``MPTCP_FAST_PURE=1`` forces the pure twins (like aiohttp's
``AIOHTTP_NO_EXTENSIONS``); a build without a compiler runs pure with one warning.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import warnings

from ._cengine import MODULES as _ENGINE_MODULES

# Every compiled module the package expects; the compiled backend is all or nothing.
EXTENSIONS = ("_options", "_crypto", "_dss", "_pcap", "_receiver", "_tracking", "_sender", "_packet",
              "_segment")
# The compiled engine (mptcp_fast/_cengine): found, not imported, here (it imports the API
# modules, which register with this one).
ENGINE_EXTENSIONS = tuple(f"_cengine.{name}" for name in _ENGINE_MODULES)

_registry: dict[str, tuple[str, object]] = {}


def _compiled_available() -> bool:
    try:
        for name in EXTENSIONS:
            importlib.import_module(f"mptcp_fast.{name}")
    except ImportError:
        return False
    for name in ENGINE_EXTENSIONS:
        spec = importlib.util.find_spec(f"mptcp_fast.{name}")
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return False
    return True


COMPILED_AVAILABLE = _compiled_available()

if os.environ.get("MPTCP_FAST_PURE", "") not in ("", "0"):
    _active = "python"
elif COMPILED_AVAILABLE:
    _active = "cython"
else:
    _active = "python"
    warnings.warn("mptcp_fast: compiled extensions are not built; using the pure-Python backend "
                  "(slower). Reinstall with a C compiler and Cython to get them.",
                  RuntimeWarning, stacklevel=2)


def active() -> str:
    """``"cython"`` or ``"python"``: the backend the API modules use now."""
    return _active


def available() -> tuple[str, ...]:
    """The backends that can be used in this installation."""
    return ("cython", "python") if COMPILED_AVAILABLE else ("python",)


def implementation(name: str, backend: str):
    """The twin module ``name`` (e.g. ``"_options"``) of ``backend``."""
    if backend == "cython":
        return importlib.import_module(f"mptcp_fast.{name}")
    if backend == "python":
        return importlib.import_module(f"mptcp_fast._pure.{name}")
    raise ValueError(f"backend must be 'cython' or 'python', not {backend!r}")


def register(api_module: str, impl_name: str, bind) -> None:
    """Called once by each API module: bind it to the active twin now and on every switch."""
    _registry[api_module] = (impl_name, bind)
    bind(implementation(impl_name, _active))


def _switch(backend: str) -> None:
    global _active
    if backend not in available():
        raise RuntimeError(f"backend {backend!r} is not available (compiled extensions missing)")
    for impl_name, bind in _registry.values():
        bind(implementation(impl_name, backend))
    _active = backend


@contextlib.contextmanager
def use(backend: str):
    """Run a block with every API module bound to ``backend`` (tests and benchmarks).

    Code must call through the module (``options.parse_option``), not through a
    name imported before the switch.
    """
    previous = _active
    _switch(backend)
    try:
        yield
    finally:
        _switch(previous)


def construct_on_backend(cls, module: str) -> None:
    """Make the pure class ``cls`` of ``mptcp_fast.<module>`` build its compiled twin
    (``mptcp_fast._cengine.<name>``'s class of the same name) while the compiled backend is
    active: ``Endpoint(...)``, ``Network(...)`` and ``BulkApp(...)`` then give the compiled
    engine, and every object it makes is compiled too. Called by the pure modules only (a
    compiled class cannot have ``__new__``)."""
    twin_module = "mptcp_fast._cengine." + module.rsplit(".", 1)[-1]

    def __new__(kind, *args, **kwargs):
        if kind is cls and _active == "cython":
            # not an instance of ``cls``: Python skips ``cls.__init__``; the twin's ran
            return getattr(importlib.import_module(twin_module), cls.__name__)(*args, **kwargs)
        return object.__new__(kind)

    cls.__new__ = staticmethod(__new__)
