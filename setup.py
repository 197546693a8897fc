"""Build the compiled hot paths. pyx/ mirrors the package by the compiled modules' dotted names:
pyx/mptcp_fast/<layer>/<name>_c.pyx (hand-written) becomes mptcp_fast.<layer>.<name>_c; a twin
without one is compiled from its pure source, mptcp_fast/<layer>/<name>_py.py, in Cython's
pure-Python mode, typed by pyx/mptcp_fast/<layer>/<name>_c.pxd; the engine's modules become
mptcp_fast._cengine.<name>, typed by pyx/mptcp_fast/_cengine/<name>.pxd. pyx/mf_*.pxd and .h are
the C helpers the compiled modules share.

Cython is needed to build (pyproject.toml's build-system), not to run: the pure backend
imports neither Cython nor anything compiled. numpy is not needed to build: the compiled
modules take numpy's arrays through typed memoryviews (the buffer protocol), not its C API.

The C is compiled at -O1 (bench/RESULTS.md, "Installing"): the generated code is calls into
the Python C API, and -O1 executes the same instructions per packet as -O3 in the engine and
the same per packet in the capture walk, the byte kernels included (the internet checksum,
SHA-256/HMAC), at about half the compile time; MPTCP_FAST_CFLAGS=-O3 asks for the slower build.

The build is parallel and, in place, incremental:
- Cython translates the modules in build_ext (not each time pip reads this file), in one
  process per core, and the C compiles run on as many threads, the largest module first.
  The number of jobs: ``build_ext -j N``, else MPTCP_FAST_BUILD_JOBS, else every core this
  process may run on (pip passes no -j).
- Built in place (``pip install -e .``, ``python setup.py build_ext --inplace``), a module whose
  last build is current is neither translated nor compiled again: the manifest written beside
  the compiled modules (mptcp_fast/_manifest.py) says it was built with the same settings
  (Python ABI, Cython, compiler and flags) from the same source, every declaration
  under pyx/ is unchanged, and its built file is there. A second ``pip install -e '.[test]'``
  compiles nothing; an edited source is compiled again.

MPTCP_FAST_NO_EXT=1, a missing Cython, or a failing C compiler all give a
pure-Python install (mptcp_fast warns once at import and runs the pure twins).
MPTCP_FAST_REQUIRE_EXT=1 turns those fallbacks into build errors (CI uses it).
MPTCP_FAST_CFLAGS / MPTCP_FAST_LDFLAGS are appended to every extension's compile and link
flags, after the project's (bench/sanitize.sh builds with AddressSanitizer and UBSan this way).
"""

import ast
import glob
import importlib.util
import os
import shlex
import shutil
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("MPTCP_FAST_REQUIRE_EXT", "") not in ("", "0")
SKIP = os.environ.get("MPTCP_FAST_NO_EXT", "") not in ("", "0")
EXTRA_CFLAGS = shlex.split(os.environ.get("MPTCP_FAST_CFLAGS", ""))
EXTRA_LDFLAGS = shlex.split(os.environ.get("MPTCP_FAST_LDFLAGS", ""))
# After Python's own CFLAGS (-O3 -g): -O1 (the docstring above) and -g0 (the debug
# information cost a third of the compile time); MPTCP_FAST_CFLAGS=-O3 or -g bring them back.
COMPILE_ARGS = ["-O1", "-g0", *EXTRA_CFLAGS]
DIRECTIVES = {"language_level": "3"}
# The engine's annotations document (``now: float`` may be an int); its .pxd files type.
ENGINE_DIRECTIVES = {"language_level": "3", "annotation_typing": False}


def _load(path: str, name: str):
    """A module of the package loaded from its file: the package itself cannot be imported
    here (its dependencies need not be installed in pip's build environment)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


manifest = _load(os.path.join("mptcp_fast", "_manifest.py"), "_mptcp_fast_manifest")


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


def compiled_sources() -> dict:
    """{compiled module name: the source it is compiled from}."""
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
    return sources


def _directives(module: str) -> dict:
    return ENGINE_DIRECTIVES if module.startswith("mptcp_fast._cengine.") else DIRECTIVES


def build_settings() -> dict:
    """What a compiled module depends on besides its sources: a change to any of these makes
    every module's last build stale."""
    import Cython
    return {"python": sysconfig.get_config_var("EXT_SUFFIX"), "cython": Cython.__version__,
            "compile_args": COMPILE_ARGS, "link_args": EXTRA_LDFLAGS, "directives": {"modules": DIRECTIVES, "engine": ENGINE_DIRECTIVES},
            "environment": {name: os.environ.get(name)
                            for name in ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS", "LDSHARED")}}


def build_jobs() -> int:
    """How many modules to translate and compile at once when build_ext is given no -j."""
    asked = os.environ.get("MPTCP_FAST_BUILD_JOBS", "")
    if asked:
        return max(1, int(asked))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                # not Linux
        return os.cpu_count() or 1


def _drop_stale_c(sources: list) -> None:
    """Delete a generated .c file older than any declaration file (.pxd, .h) under pyx/:
    Cython does not see every cimport of the engine's pure-mode sources, and a module compiled
    against an old class layout crashes at run time (a struct size or method table that no
    longer matches)."""
    newest = max((os.path.getmtime(p) for p in manifest.declarations(".")), default=0.0)
    for source in sources:
        generated = os.path.splitext(source)[0] + ".c"
        if os.path.exists(generated) and os.path.getmtime(generated) < newest:
            os.remove(generated)


def extensions():
    """The compiled modules, from their sources (build_ext translates them): none when the
    build is skipped or cannot happen."""
    if SKIP:
        return []
    try:
        import Cython  # noqa: F401  (build_ext translates with it)
    except ImportError:
        if REQUIRE:
            raise
        print("mptcp_fast: Cython not found, installing the pure-Python backend only", file=sys.stderr)
        return []
    return [Extension(name, [path], include_dirs=["pyx"],
                      extra_compile_args=COMPILE_ARGS, extra_link_args=EXTRA_LDFLAGS)
            for name, path in compiled_sources().items()]


class BuildExt(build_ext):
    """Translate and compile in parallel; in place, only the modules that are not current; keep
    installing (pure) when the C toolchain fails, unless REQUIRE is set."""

    failed = False                        # an extension did not build: record no manifest

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:             # pip install passes no -j
            self.parallel = build_jobs()

    def run(self):
        if not self.extensions:
            return
        everything = list(self.extensions)
        sources = {ext.name: ext.sources[0] for ext in everything}
        settings = build_settings()
        # beside the compiled modules: the source tree (in place, editable) or build_lib
        record = os.path.join(os.path.dirname(self.get_ext_fullpath("mptcp_fast._x")),
                              manifest.FILENAME)
        current = self._current(record, sources, settings)
        # the sources' hashes as they are before any is read: a file edited while the build
        # runs then disagrees with the record, and the build counts as stale, not current
        built_from = manifest.record(sources, settings, ".")
        to_build = [ext for ext in everything if ext.name not in current]
        print(f"mptcp_fast: {len(everything)} compiled modules, {len(current)} current, "
              f"{len(to_build)} to build ({self.parallel} jobs)", file=sys.stderr)
        for ext in everything:
            if ext.name in current:       # the build directory holds every module, as after a
                built, in_place = self._paths(ext)                          # full build
                self._copy(in_place, built)
        if to_build:
            # no record while modules are replaced: a build that stops half-way is not current
            if os.path.exists(record):
                os.remove(record)
            try:
                self.extensions = self._translate(to_build)
                super().run()
            except Exception as exc:  # a compiler missing or failing is reported, then skipped
                if REQUIRE:
                    raise
                print(f"mptcp_fast: building the extensions failed ({exc}); pure-Python backend "
                      f"only", file=sys.stderr)
                return
            finally:
                self.extensions = everything
        if not self.failed:
            manifest.write(record, built_from)

    def _current(self, record: str, sources: dict, settings: dict) -> set:
        """The modules whose in-place build is current (none when not building in place, or
        when told to build everything: build_ext --force)."""
        if not self.inplace or self.force:
            return set()
        current = manifest.current_modules(record, ".", sources, settings)
        return {ext.name for ext in self.extensions
                if ext.name in current and os.path.exists(self._paths(ext)[1])}

    def _translate(self, extensions: list) -> list:
        """Cython's C for ``extensions``, one process per job, largest module first."""
        from Cython.Build import cythonize
        _drop_stale_c([ext.sources[0] for ext in extensions])
        jobs = os.cpu_count() if self.parallel is True else int(self.parallel)
        for directives in (DIRECTIVES, ENGINE_DIRECTIVES):
            group = [ext for ext in extensions if _directives(ext.name) is directives]
            if group:
                translated = cythonize(group, compiler_directives=directives, quiet=True,
                                       include_path=["pyx"], nthreads=jobs if jobs > 1 else 0,
                                       force=bool(self.force))
                c_sources = {ext.name: ext.sources for ext in translated}
                for ext in group:         # setuptools keeps its own notes on these objects
                    ext.sources = c_sources[ext.name]
        # the thread pool takes them in this order: the longest compiles first, so no long one
        # is left to run alone at the end
        return sorted(extensions, key=lambda ext: -os.path.getsize(ext.sources[0]))

    def _paths(self, ext) -> tuple:
        """(where the build writes ``ext``, where it goes in place)."""
        inplace = self.inplace
        try:
            self.inplace = 0
            built = self.get_ext_fullpath(ext.name)
            self.inplace = 1
            return built, self.get_ext_fullpath(ext.name)
        finally:
            self.inplace = inplace

    @staticmethod
    def _copy(source: str, target: str) -> None:
        """Copy, then rename over ``target``: a process that has the old file loaded keeps it
        whole (rewriting a loaded shared object in place can crash that process)."""
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        partial = target + ".partial"
        shutil.copyfile(source, partial)
        shutil.copymode(source, partial)
        os.replace(partial, target)

    def copy_extensions_to_source(self):
        """Put the modules built now in place (setuptools' own copy rewrites the file)."""
        for ext in self.extensions:
            built, in_place = self._paths(ext)
            if os.path.exists(built):     # one that failed (not REQUIRE) stays as it was
                self._copy(built, in_place)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            self.failed = True
            print(f"mptcp_fast: {ext.name} did not build ({exc}); pure-Python backend only",
                  file=sys.stderr)


# pip (setuptools.build_meta) runs this file as __main__; tests/test_build.py imports it for
# build_settings().
if __name__ == "__main__":
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
