"""Choose between the compiled and the pure-Python implementation of the hot paths.

Each hot module has two twins with the same functions: ``mptcp_fast.<name>``
compiled from ``pyx/<name>.pyx`` and ``mptcp_fast._pure.<name>``. An API module
registers itself with :func:`register` and receives the active twin through its
bind callback. ``MPTCP_FAST_PURE=1`` forces the pure twins (like aiohttp's
``AIOHTTP_NO_EXTENSIONS``); a build without a compiler runs pure with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
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


# setup.py writes this beside the compiled modules: each one's source files and their SHA-256.
MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_compiled_sources.json")
# Paths in the manifest are relative to the project root (the package's parent folder).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REBUILD = "pip install -e . (or python setup.py build_ext --inplace)"


def stale_sources(manifest_path: str = MANIFEST, root: str = _ROOT) -> list[str] | None:
    """The source files that changed since the compiled modules were built from them, [] if none
    did, None if the build left no manifest. Files absent here (an installed wheel carries no
    pyx/) are not compared: only a source that is present can disagree with its build."""
    try:
        with open(manifest_path) as f:
            recorded = json.load(f)["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    changed = []
    for path, digest in recorded.items():
        try:
            with open(os.path.join(root, path), "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    changed.append(path)
        except FileNotFoundError:
            continue
    return changed


def _compiled_usable() -> tuple[bool, str | None]:
    """Whether the compiled backend can run, and if not while it is built, why (a warning)."""
    if not _compiled_available():
        return False, ("compiled extensions are not built; using the pure-Python backend "
                       "(slower). Reinstall with a C compiler and Cython to get them.")
    stale = stale_sources()
    if stale is None:
        return False, (f"the compiled extensions carry no record of their sources "
                       f"({os.path.basename(MANIFEST)}): they may be stale; using the pure-Python "
                       f"backend. Rebuild them: {REBUILD}")
    if stale:
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        return False, (f"{shown} changed after the compiled extensions were built: using the "
                       f"pure-Python backend, which runs the sources as they are. Rebuild: "
                       f"{REBUILD}")
    return True, None


COMPILED_AVAILABLE, UNUSABLE_REASON = _compiled_usable()

if os.environ.get("MPTCP_FAST_PURE", "") not in ("", "0"):
    _active = "python"
elif COMPILED_AVAILABLE:
    _active = "cython"
else:
    _active = "python"
    warnings.warn(f"mptcp_fast: {UNUSABLE_REASON}", RuntimeWarning, stacklevel=2)


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
