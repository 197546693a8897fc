"""Build the compiled hot paths. pyx/ mirrors the package by the compiled modules' dotted names:
pyx/mptcp_fast/<layer>/<name>_c.pyx (hand-written) becomes mptcp_fast.<layer>.<name>_c; a twin
without one is compiled from its pure source, mptcp_fast/<layer>/<name>_py.py, in Cython's
pure-Python mode, typed by pyx/mptcp_fast/<layer>/<name>_c.pxd; the engine's modules become
mptcp_fast._cengine.<name>, typed by pyx/mptcp_fast/_cengine/<name>.pxd. pyx/mf_*.pxd and .h are
the C helpers the compiled modules share.

MPTCP_FAST_NO_EXT=1, a missing Cython, or a failing C compiler all give a
pure-Python install (mptcp_fast warns once at import and runs the pure twins).
MPTCP_FAST_REQUIRE_EXT=1 turns those fallbacks into build errors (CI uses it).
MPTCP_FAST_CFLAGS / MPTCP_FAST_LDFLAGS are appended to every extension's compile and link
flags, after the -O3 (bench/sanitize.sh builds with AddressSanitizer and UBSan this way).
"""

import ast
import glob
import hashlib
import json
import os
import shlex
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("MPTCP_FAST_REQUIRE_EXT", "") not in ("", "0")
SKIP = os.environ.get("MPTCP_FAST_NO_EXT", "") not in ("", "0")
EXTRA_CFLAGS = shlex.split(os.environ.get("MPTCP_FAST_CFLAGS", ""))
EXTRA_LDFLAGS = shlex.split(os.environ.get("MPTCP_FAST_LDFLAGS", ""))


def _backend_constant(name: str):
    """A constant of mptcp_fast/_backend.py (TWINS, ENGINE_MODULES), read without importing
    the package."""
    with open(os.path.join("mptcp_fast", "_backend.py")) as f:
        for node in ast.parse(f.read()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
                return ast.literal_eval(node.value)
    raise RuntimeError(f"mptcp_fast/_backend.py has no {name}")


TWINS = _backend_constant("TWINS")              # {"_options": "wire", ...}
ENGINE = _backend_constant("ENGINE_MODULES")
SIMULATION = ("netem", "apps")        # compiled with the engine, but from mptcp_fast/sim/


def _engine_source(name: str) -> str:
    return f"mptcp_fast/sim/{name}.py" if name in SIMULATION else f"mptcp_fast/engine/{name}.py"


def _drop_stale_c(sources: dict) -> None:
    """Delete a generated .c file older than any declaration file (.pxd, .h) under pyx/:
    Cython does not see every cimport of the engine's pure-mode sources, and a module compiled
    against an old class layout crashes at run time (a struct size or method table that no
    longer matches)."""
    declarations = [os.path.getmtime(p) for pattern in ("pyx/**/*.pxd", "pyx/**/*.h")
                    for p in glob.glob(pattern, recursive=True)]
    newest = max(declarations, default=0.0)
    for source in sources.values():
        generated = os.path.splitext(source)[0] + ".c"
        if os.path.exists(generated) and os.path.getmtime(generated) < newest:
            os.remove(generated)


# What each compiled module was built from: {module name: source path}, filled by extensions().
SOURCES: dict = {}
# Written beside the compiled modules; mptcp_fast._backend compares it with the sources it finds
# and refuses a compiled module whose source changed after the build (a stale build).
MANIFEST = "_compiled_sources.json"


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def build_manifest() -> dict:
    """The SHA-256 of every file the compiled modules were built from: each module's source, its
    own .pxd, and every shared declaration under pyx/ (any of them can change a module's
    layout); and which module came from which source."""
    files = set(SOURCES.values())
    files.update(p for pattern in ("pyx/**/*.pxd", "pyx/**/*.h")
                 for p in glob.glob(pattern, recursive=True))
    return {"modules": dict(SOURCES), "sha256": {path: _sha256(path) for path in sorted(files)}}


def extensions():
    if SKIP:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        print("mptcp_fast: Cython not found, installing the pure-Python backend only", file=sys.stderr)
        return []
    import numpy

    sources = {}
    for name, layer in TWINS.items():
        # hand-written: pyx/mptcp_fast/<layer>/<name>_c.pyx. Otherwise one source: the pure twin
        # compiled in Cython's pure-Python mode; its augmenting .pxd is named after the compiled
        # module, pyx/mptcp_fast/<layer>/<name>_c.pxd (Cython looks it up by the extension's
        # name on the include path, not beside the .py), as are the .pxd files that let other
        # compiled modules cimport a module's classes (pyx/mptcp_fast/wire/_receiver_c.pxd).
        written = f"pyx/mptcp_fast/{layer}/{name}_c.pyx"
        one_source = f"mptcp_fast/{layer}/{name}_py.py"
        sources[f"mptcp_fast.{layer}.{name}_c"] = written if os.path.exists(written) else one_source
    stray = set(glob.glob("pyx/**/*.pyx", recursive=True)) - set(sources.values())
    if stray:
        raise RuntimeError(f"{sorted(stray)}: not a twin named in mptcp_fast/_backend.py TWINS")
    # The engine's per-packet modules, the same way: mptcp_fast/engine/<name>.py (and the
    # emulator's, mptcp_fast/sim/netem.py and apps.py) compiled as mptcp_fast._cengine.<name>,
    # typed by pyx/mptcp_fast/_cengine/<name>.pxd.
    sources.update({f"mptcp_fast._cengine.{name}": _engine_source(name) for name in ENGINE})
    _drop_stale_c(sources)
    modules = [
        Extension(
            name,
            [path],
            include_dirs=[numpy.get_include(), "pyx"],
            extra_compile_args=["-O3", *EXTRA_CFLAGS],
            extra_link_args=EXTRA_LDFLAGS,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name, path in sources.items()
    ]
    try:
        engine = [m for m in modules if m.name.startswith("mptcp_fast._cengine.")]
        rest = [m for m in modules if m not in engine]
        # the engine's annotations document (``now: float`` may be an int); its .pxd files type
        built = (cythonize(rest, compiler_directives={"language_level": "3"}, quiet=True,
                           include_path=["pyx"])
                 + cythonize(engine, compiler_directives={"language_level": "3",
                                                          "annotation_typing": False},
                             quiet=True, include_path=["pyx"]))
        SOURCES.update(sources)           # what the manifest records, once Cython took them all
        return built
    except Exception as exc:  # Cython rejected a module: install pure unless asked not to
        if REQUIRE:
            raise
        print(f"mptcp_fast: cythonize failed ({exc}); pure-Python backend only", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """Keep installing (pure) when the C toolchain fails, unless REQUIRE is set."""

    failed = False                        # an extension did not build: record no manifest

    def run(self):
        try:
            super().run()
        except Exception as exc:  # a compiler missing or failing is reported, then skipped
            if REQUIRE:
                raise
            print(f"mptcp_fast: building the extensions failed ({exc}); pure-Python backend only",
                  file=sys.stderr)
            return
        if SOURCES and not self.failed:
            # beside the compiled modules: the source tree (in place, editable) or build_lib
            package_dir = os.path.dirname(self.get_ext_fullpath("mptcp_fast._x"))
            with open(os.path.join(package_dir, MANIFEST), "w") as f:
                json.dump(build_manifest(), f, indent=1, sort_keys=True)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            self.failed = True
            print(f"mptcp_fast: {ext.name} did not build ({exc}); pure-Python backend only",
                  file=sys.stderr)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
