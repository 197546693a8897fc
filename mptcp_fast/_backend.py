"""Choose between the compiled and the pure-Python implementation of the hot paths.

The backend is chosen once, at import: the compiled one when it is built and was built from the
sources present (``stale_sources``), unless ``MPTCP_FAST_PURE=1`` (like aiohttp's
``AIOHTTP_NO_EXTENSIONS``); otherwise the pure one, with one warning saying why.

What a user sees follows from that choice:
- an API module's functions (``options.parse_option``, ...) are the active twin's, bound when
  the module is imported: ``mptcp_fast.wire.options`` with ``mptcp_fast.wire._options_c``
  (compiled from ``pyx/mptcp_fast/wire/_options_c.pyx``) or ``mptcp_fast.wire._options_py``.
  The API module registers with :func:`register`, whose bind callback takes the twin's
  functions and classes; the twins take the API's value types from modules below them both
  (``wire/_option_types.py``, ...), never from the API module;
- the engine's public classes (``Endpoint``, ``Network``, ``BulkApp``) are :class:`PublicClass`
  faces: calling one builds the active backend's object, and ``isinstance`` holds for either's.

:func:`use` switches a running process to the other backend inside a ``with`` block; it is for
this project's tests and benchmarks, which run both backends in one process, and rebinds the API
modules' functions: code that follows it calls through the module (``options.parse_option``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import warnings
from typing import Any, Callable

from . import _manifest

# The hot paths with two implementations, by name and the layer (subpackage) they sit in:
# mptcp_fast.<layer>.<name>_py is the pure one, mptcp_fast.<layer>.<name>_c the compiled one
# (from pyx/mptcp_fast/<layer>/<name>_c.pyx, or from <name>_py.py itself in Cython's pure
# mode, typed by pyx/mptcp_fast/<layer>/<name>_c.pxd). The compiled backend is all or nothing.
TWINS = {"_options": "wire", "_crypto": "wire", "_dss": "wire", "_packet": "wire",
         "_receiver": "wire", "_segment": "wire", "_sender": "wire",
         "_pcap": "analysis", "_tracking": "analysis", "_series": "analysis"}
EXTENSIONS = tuple(f"{layer}.{name}_c" for name, layer in TWINS.items())
# The compiled engine, mptcp_fast._cengine.<name>: the modules compiled from the engine's
# sources (and the emulator's), in import order (setup.py reads this list). Found, not
# imported, here (they import the API modules, which register with this one).
ENGINE_MODULES = ("rtt", "cc", "buffers", "scheduler", "subflow", "pathmanager", "fallback",
                  "connection", "endpoint", "apps", "netem")
ENGINE_EXTENSIONS = tuple(f"_cengine.{name}" for name in ENGINE_MODULES)

_registry: dict[str, tuple[str, Callable[[Any], None]]] = {}


def _compiled_available() -> bool:
    # the wire layer's twins are imported (the engine needs them at once); the analysis
    # layer's only found, like the engine's modules: they import numpy, which a program
    # that only runs the engine never needs (mptcp_fast/_lazy.py)
    try:
        for name in EXTENSIONS:
            if name.startswith("wire."):
                importlib.import_module(f"mptcp_fast.{name}")
    except ImportError:
        return False
    for name in ENGINE_EXTENSIONS + tuple(n for n in EXTENSIONS if not n.startswith("wire.")):
        spec = importlib.util.find_spec(f"mptcp_fast.{name}")
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return False
    return True


# setup.py writes this beside the compiled modules: each one's source files and their SHA-256
# (mptcp_fast/_manifest.py, which setup.py also reads to skip the modules that are current).
MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), _manifest.FILENAME)
# Paths in the manifest are relative to the project root (the package's parent folder).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REBUILD = "pip install -e . (or python setup.py build_ext --inplace)"


def stale_sources(manifest_path: str = MANIFEST, root: str = _ROOT) -> list[str] | None:
    """The source files that changed since the compiled modules were built from them, [] if none
    did, None if the build left no manifest (:func:`mptcp_fast._manifest.stale_sources`)."""
    return _manifest.stale_sources(manifest_path, root)


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
    """The twin module ``name`` (e.g. ``"_options"``, one of :data:`TWINS`) of ``backend``."""
    suffix = {"cython": "_c", "python": "_py"}.get(backend)
    if suffix is None:
        raise ValueError(f"backend must be 'cython' or 'python', not {backend!r}")
    return importlib.import_module(f"mptcp_fast.{TWINS[name]}.{name}{suffix}")


def register(api_module: str, impl_name: str, bind: Callable[[Any], None]) -> None:
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


class PublicClass(type):
    """The type of a public engine class (``Endpoint``, ``Network``, ``BulkApp``) whose objects
    come from the active backend. Calling it builds the active backend's object (the compiled
    twin, ``mptcp_fast._cengine.<module>``'s class of the same name, or the pure class), and
    every object that one makes comes from the same backend. ``isinstance(obj, Endpoint)``
    holds for the objects of either backend; class attributes, methods (as functions) and docs
    are the pure class's.
    It cannot be subclassed: the backends' classes are final (wrap an object instead)."""

    def __new__(meta, name, bases, namespace):
        if any(isinstance(base, PublicClass) for base in bases):
            raise TypeError(f"{name}: {bases[0].__name__} builds the active backend's object and "
                            f"cannot be subclassed; wrap one instead")
        return super().__new__(meta, name, bases, namespace)

    def __call__(face, *args, **kwargs):
        return face.backend_class(_active)(*args, **kwargs)

    def __instancecheck__(face, obj) -> bool:
        return any(isinstance(obj, cls) for cls in face._loaded.values())

    def __subclasscheck__(face, cls) -> bool:
        return any(issubclass(cls, loaded) for loaded in face._loaded.values())

    def __getattr__(face, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(face._loaded["python"], name)

    def backend_class(face, backend: str) -> type:
        """The class that builds ``backend``'s objects (the compiled one is imported on first
        use: the compiled engine imports the API modules, which may still be loading)."""
        cls = face._loaded.get(backend)
        if cls is None:
            if backend != "cython" or not COMPILED_AVAILABLE:
                raise RuntimeError(f"backend {backend!r} is not available")
            module = importlib.import_module(face._compiled_module)
            cls = face._loaded[backend] = getattr(module, face.__name__)
        return cls


def public_class(pure: type, module: str) -> PublicClass:
    """The public face of the pure engine class ``pure`` of ``mptcp_fast.<...>.<module>``: what
    its module exports under the class's name (called by the pure modules only).

    The face carries the pure class's docstring, signature and public methods and properties
    (the same objects its attribute lookup returns), so that ``help(Endpoint)`` and other
    documentation tools show the real parameters and methods; calling it still builds the
    active backend's object."""
    import inspect
    namespace: dict[str, Any] = {name: value for name, value in vars(pure).items()
                 if not name.startswith("_") and (inspect.isfunction(value)
                                                  or isinstance(value, property))}
    namespace.update({
        "__doc__": pure.__doc__, "__module__": pure.__module__, "__qualname__": pure.__qualname__,
        "__signature__": inspect.signature(pure), "_loaded": {"python": pure},
        "_compiled_module": "mptcp_fast._cengine." + module.rsplit(".", 1)[-1]})
    return PublicClass(pure.__name__, (), namespace)
