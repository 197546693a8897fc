"""A build that cannot lie: a compiled module whose source changed after it was built is not
used. setup.py records each compiled module's source files and their SHA-256 beside the modules
(``_compiled_sources.json``); ``mptcp_fast._backend`` compares them with the sources it finds at
import, and on a difference warns once and runs the pure-Python backend, which runs the sources
as they are (an edit to ``engine/connection.py`` after an editable install would otherwise
change nothing on the default backend)."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys

import pytest

from mptcp_fast import _backend, _manifest

PACKAGE = os.path.dirname(os.path.abspath(_backend.__file__))
ROOT = os.path.dirname(PACKAGE)


def _write_manifest(root, files: list) -> str:
    """A manifest as setup.py writes it, for ``files`` as they are now."""
    def digest(name):
        with open(os.path.join(root, name), "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    path = os.path.join(root, "manifest.json")
    with open(path, "w") as f:
        json.dump({"modules": {}, "sha256": {name: digest(name) for name in files}}, f)
    return path


def test_stale_sources_names_exactly_the_files_that_changed(tmp_path):
    for name, text in [("a.py", "x = 1\n"), ("a.pxd", "cdef int x\n"), ("b.py", "y = 2\n"),
                       ("shared.pxd", "cdef int z\n")]:
        (tmp_path / name).write_text(text)
    manifest = _write_manifest(str(tmp_path), ["a.py", "a.pxd", "b.py", "shared.pxd"])
    assert _backend.stale_sources(manifest, str(tmp_path)) == []
    (tmp_path / "a.pxd").write_text("cdef long x\n")            # a declaration of module a
    assert _backend.stale_sources(manifest, str(tmp_path)) == ["a.pxd"]
    (tmp_path / "shared.pxd").write_text("cdef long z\n")       # one every module may cimport
    (tmp_path / "b.py").write_text("y = 3\n")
    assert _backend.stale_sources(manifest, str(tmp_path)) == ["a.pxd", "b.py", "shared.pxd"]


def test_sources_absent_from_an_installation_are_not_compared(tmp_path):
    """An installed wheel has no pyx/: only the sources it carries can disagree."""
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "a.pxd").write_text("cdef int x\n")
    manifest = _write_manifest(str(tmp_path), ["a.py", "a.pxd"])
    os.remove(tmp_path / "a.pxd")
    assert _backend.stale_sources(manifest, str(tmp_path)) == []


def test_a_build_without_a_manifest_is_reported_as_unknown(tmp_path):
    assert _backend.stale_sources(str(tmp_path / "missing.json"), str(tmp_path)) is None
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "old.json").write_text('{"modules": {}}')        # another layout: not trusted
    assert _backend.stale_sources(str(tmp_path / "old.json"), str(tmp_path)) is None
    assert _backend.stale_sources(str(tmp_path / "bad.json"), str(tmp_path)) is None


def _copy_of_the_build(tmp_path):
    """The package as built here (compiled modules and manifest) and its pyx/ sources."""
    ignore = shutil.ignore_patterns("*.c", "__pycache__", "data")
    shutil.copytree(PACKAGE, tmp_path / "mptcp_fast", ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "pyx"), tmp_path / "pyx", ignore=ignore)
    return tmp_path


def _import_backend(root):
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("MPTCP_FAST_PURE", None)
    done = subprocess.run([sys.executable, "-c", "import mptcp_fast; print(mptcp_fast.__file__); "
                           "print(mptcp_fast.BACKEND)"],
                          cwd=str(root), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    where, backend = done.stdout.split()
    assert where == str(root / "mptcp_fast" / "__init__.py")      # the copy, not this tree
    return backend, done.stderr


@pytest.mark.skipif(not _backend.COMPILED_AVAILABLE, reason="compiled backend not built")
def test_an_engine_source_edited_after_the_build_turns_the_compiled_backend_off(tmp_path):
    root = _copy_of_the_build(tmp_path)
    assert _import_backend(root) == ("cython", "")
    with open(root / "mptcp_fast" / "engine" / "connection.py", "a") as f:
        f.write("\n# an edit made after the build\n")
    backend, warning = _import_backend(root)
    assert backend == "python"
    assert "mptcp_fast/engine/connection.py changed after the compiled extensions were built" \
        in warning
    assert warning.count("RuntimeWarning") == 1 and "Rebuild: pip install -e ." in warning


@pytest.mark.skipif(not _backend.COMPILED_AVAILABLE, reason="compiled backend not built")
def test_a_changed_declaration_turns_the_compiled_backend_off(tmp_path):
    root = _copy_of_the_build(tmp_path)
    with open(root / "pyx" / "mf_serial.pxd", "a") as f:
        f.write("\n# an edit made after the build\n")
    backend, warning = _import_backend(root)
    assert backend == "python" and "pyx/mf_serial.pxd changed" in warning


@pytest.mark.skipif(not _backend.COMPILED_AVAILABLE, reason="compiled backend not built")
def test_compiled_modules_without_a_manifest_are_not_trusted(tmp_path):
    root = _copy_of_the_build(tmp_path)
    os.remove(root / "mptcp_fast" / "_compiled_sources.json")
    backend, warning = _import_backend(root)
    assert backend == "python" and "carry no record of their sources" in warning


# --- Building only what changed (mptcp_fast/_manifest.py, setup.py) -----------------------------


# as setup.py's build_settings() makes them: the tuples come back from JSON as lists
SETTINGS = {"python": ".cpython-311-x86_64-linux-gnu.so", "cython": "3.3.1",
            "compile_args": ["-O3", "-g0"], "macros": [("NPY_NO_DEPRECATED_API", "NPY_1_7")]}
RTT, CC = "mptcp_fast._cengine.rtt", "mptcp_fast._cengine.cc"


def _built_tree(tmp_path, settings=SETTINGS):
    """Two modules' sources, their declarations, and the manifest of a build of both."""
    for name, text in [("mptcp_fast/engine/rtt.py", "x = 1\n"), ("mptcp_fast/engine/cc.py", "y = 2\n"),
                       ("pyx/mptcp_fast/_cengine/rtt.pxd", "cdef int x\n"),
                       ("pyx/mf_serial.pxd", "cdef int z\n"), ("pyx/mf_sha.h", "int f(void);\n")]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = {RTT: "mptcp_fast/engine/rtt.py", CC: "mptcp_fast/engine/cc.py"}
    path = str(tmp_path / "built.json")
    _manifest.write(path, _manifest.record(modules, settings, str(tmp_path)))
    return path, modules


def test_after_an_edit_only_the_edited_module_is_stale(tmp_path):
    built, modules = _built_tree(tmp_path)
    assert _manifest.current_modules(built, str(tmp_path), modules, SETTINGS) == {RTT, CC}
    (tmp_path / "mptcp_fast/engine/cc.py").write_text("y = 3\n")
    assert _manifest.current_modules(built, str(tmp_path), modules, SETTINGS) == {RTT}
    (tmp_path / "mptcp_fast/engine/cc.py").write_text("y = 2\n")          # the edit undone
    assert _manifest.current_modules(built, str(tmp_path), modules, SETTINGS) == {RTT, CC}


@pytest.mark.parametrize("change", ["edited", "added", "removed"])
def test_a_declaration_edited_added_or_removed_makes_every_module_stale(tmp_path, change):
    """Any .pxd or .h under pyx/ can change any module's C (its layout, a cimported class)."""
    built, modules = _built_tree(tmp_path)
    if change == "edited":
        (tmp_path / "pyx/mf_serial.pxd").write_text("cdef long z\n")
    elif change == "added":
        (tmp_path / "pyx/mptcp_fast/_cengine/cc.pxd").write_text("cdef int y\n")
    else:
        os.remove(tmp_path / "pyx/mf_sha.h")
    assert _manifest.current_modules(built, str(tmp_path), modules, SETTINGS) == set()


def test_other_settings_or_no_record_make_every_module_stale(tmp_path):
    built, modules = _built_tree(tmp_path)
    for other in [{**SETTINGS, "compile_args": ["-O3", "-g"]}, {**SETTINGS, "cython": "3.1.0"},
                  {**SETTINGS, "python": ".cpython-312-x86_64-linux-gnu.so"}]:
        assert _manifest.current_modules(built, str(tmp_path), modules, other) == set()
    with open(built) as f:
        older = {key: value for key, value in json.load(f).items() if key != "settings"}
    with open(built, "w") as f:                      # a manifest from before settings were kept
        json.dump(older, f)
    assert _manifest.current_modules(built, str(tmp_path), modules, SETTINGS) == set()
    assert _manifest.current_modules(str(tmp_path / "none.json"), str(tmp_path), modules,
                                     SETTINGS) == set()


def test_a_module_to_be_built_from_another_source_is_stale(tmp_path):
    """rtt built from its .py; a hand-written .pyx for it appeared since."""
    built, modules = _built_tree(tmp_path)
    (tmp_path / "pyx/mptcp_fast/_cengine/rtt.pyx").write_text("cdef int x = 1\n")
    now = {**modules, RTT: "pyx/mptcp_fast/_cengine/rtt.pyx"}
    assert _manifest.current_modules(built, str(tmp_path), now, SETTINGS) == {CC}


def _tree_to_build(tmp_path):
    """A copy of this tree as built here (compiled modules and manifest, no generated C), with
    what setup.py reads, to be built again."""
    root = _copy_of_the_build(tmp_path)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(os.path.join(ROOT, name), root / name)
    return root


# setup.py run with an edit of RTT_SOURCE made while the build runs: once Cython has
# translated the modules to build, before the compiler runs.
EDIT_DURING_THE_BUILD = """
import runpy, sys
import Cython.Build
edited = sys.argv.pop()
translate = Cython.Build.cythonize
def cythonize(*args, **kwargs):
    translated = translate(*args, **kwargs)
    with open(edited, "a") as f:
        f.write("\\n# an edit made while the build ran\\n")
    return translated
Cython.Build.cythonize = cythonize
sys.argv[0] = "setup.py"
runpy.run_path("setup.py", run_name="__main__")
"""


def _build_in_place(root, edit_during_the_build=None, **environment):
    env = {**os.environ, "MPTCP_FAST_BUILD_JOBS": "2", **environment}
    for name in ("MPTCP_FAST_REQUIRE_EXT", "MPTCP_FAST_NO_EXT"):
        if name not in environment:
            env.pop(name, None)
    command = [sys.executable, "setup.py", "build_ext", "--inplace"]
    if edit_during_the_build is not None:
        command[1:2] = ["-c", EDIT_DURING_THE_BUILD]
        command.append(edit_during_the_build)
    return subprocess.run(command, cwd=str(root), env=env, capture_output=True, text=True,
                          timeout=1200)


def _summary(stderr: str) -> str:
    """setup.py's line on what it built."""
    return [line for line in stderr.splitlines() if "compiled modules," in line][-1]


def _compiled_files(root) -> dict:
    """{compiled module file: its inode}: a file replaced gets a new inode."""
    found = {}
    for folder, _, files in os.walk(root / "mptcp_fast"):
        for name in files:
            if name.endswith(".so"):
                found[os.path.relpath(os.path.join(folder, name), root)] = \
                    os.stat(os.path.join(folder, name)).st_ino
    return found


def _require_settings_of_this_build(root):
    """Skip when this tree was built with other settings than this environment's (another
    Cython, other flags): setup.py here would rightly rebuild every module."""
    here = subprocess.run([sys.executable, "-c", "import json, setup; "
                           "print(json.dumps(setup.build_settings(), sort_keys=True))"],
                          cwd=str(root), capture_output=True, text=True, timeout=120)
    assert here.returncode == 0, here.stderr
    with open(root / "mptcp_fast" / _manifest.FILENAME) as f:
        recorded = json.load(f).get("settings")
    if recorded != json.loads(here.stdout):
        pytest.skip(f"the compiled modules were built with {recorded}, this environment builds "
                    f"with {here.stdout.strip()}: every module would be rebuilt")


MODULES = len(_backend.TWINS) + len(_backend.ENGINE_MODULES) + 1   # and Cython's shared utility
RTT_SOURCE = os.path.join("mptcp_fast", "engine", "rtt.py")


@pytest.mark.requires("compiled", "cython", "c_compiler")
def test_a_current_build_compiles_nothing_and_an_edit_recompiles_only_its_module(tmp_path):
    root = _tree_to_build(tmp_path)
    _require_settings_of_this_build(root)
    before = _compiled_files(root)
    assert len(before) == MODULES
    done = _build_in_place(root)
    assert done.returncode == 0, done.stderr
    assert _summary(done.stderr) == \
        f"mptcp_fast: {MODULES} compiled modules, {MODULES} current, 0 to build (2 jobs)"
    assert _compiled_files(root) == before                      # not one file replaced

    with open(root / RTT_SOURCE, "a") as f:
        f.write("\n# an edit made after the build\n")
    # edited again while it is rebuilt: the module was compiled from the first edit, so the
    # record keeps the hash read before the build, and the build is stale, not current
    done = _build_in_place(root, edit_during_the_build=RTT_SOURCE)
    assert done.returncode == 0, done.stderr
    assert _summary(done.stderr) == \
        f"mptcp_fast: {MODULES} compiled modules, {MODULES - 1} current, 1 to build (2 jobs)"
    backend, warning = _import_backend(root)
    assert backend == "python" and RTT_SOURCE in warning

    before = _compiled_files(root)      # (a file replaced twice may get its first inode back)
    done = _build_in_place(root)
    assert done.returncode == 0, done.stderr
    assert _summary(done.stderr) == \
        f"mptcp_fast: {MODULES} compiled modules, {MODULES - 1} current, 1 to build (2 jobs)"
    after = _compiled_files(root)
    replaced = [path for path in before if after[path] != before[path]]
    assert len(replaced) == 1 and replaced[0].startswith("mptcp_fast/_cengine/rtt.")
    with open(root / "mptcp_fast" / _manifest.FILENAME) as f:
        recorded = json.load(f)["sha256"][RTT_SOURCE]
    assert recorded == _manifest.sha256(str(root / RTT_SOURCE))
    assert _import_backend(root) == ("cython", "")             # current again: compiled


# setup.py with Cython's translation and the compiler replaced by recorders: which modules
# would be translated and compiled, and whether forced past the files' times (an empty .c
# stands for each translation; translations run in the build's worker processes, so they
# are recorded in a file, a line each).
RECORDED_BUILD = """
import json, os, runpy, sys
import Cython.Build
from setuptools.command import build_ext
compiled = []
def cythonize(extensions, **options):
    for ext in extensions:
        generated = ext.sources[0].rsplit(".", 1)[0] + ".c"
        open(generated, "w").close()
        ext.sources = [generated]
        with open(os.environ["TRANSLATIONS"], "a") as f:
            f.write(json.dumps([ext.name, options.get("force")]) + chr(10))
    return extensions
def build_extension(self, ext):
    compiled.append([ext.name, bool(self.force)])
Cython.Build.cythonize = cythonize
build_ext.build_ext.build_extension = build_extension
sys.argv[0] = "setup.py"
runpy.run_path("setup.py", run_name="__main__")
print("COMPILED", json.dumps(compiled))
"""


@pytest.mark.requires("compiled", "cython")
def test_new_build_settings_rebuild_every_module_whatever_the_file_times_say(tmp_path):
    """Built files newer than their sources, but other flags: every module is translated and
    compiled again (setuptools' own check compares times, and would have called them current)."""
    root = _tree_to_build(tmp_path)
    _require_settings_of_this_build(root)
    translations = tmp_path / "translations"
    env = {**os.environ, "MPTCP_FAST_BUILD_JOBS": "2", "MPTCP_FAST_CFLAGS": "-DMPTCP_FAST_NEW",
           "TRANSLATIONS": str(translations)}
    done = subprocess.run([sys.executable, "-c", RECORDED_BUILD, "build_ext", "--inplace"],
                          cwd=str(root), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _summary(done.stderr) == \
        f"mptcp_fast: {MODULES} compiled modules, 0 current, {MODULES} to build (2 jobs)"
    seen = json.loads(done.stdout.split("COMPILED ", 1)[1])
    compiled = dict(seen)
    assert len(seen) == len(compiled) == MODULES and all(compiled.values())
    lines = [json.loads(line) for line in translations.read_text().splitlines()]
    translated = dict(lines)                           # all but the shared utility module
    assert len(lines) == len(translated)
    assert set(translated) == set(compiled) - {"mptcp_fast._cyutility"}
    assert all(translated.values())


@pytest.mark.requires("compiled", "cython")
def test_a_build_that_fails_leaves_no_record_and_fails_where_required(tmp_path):
    """A module Cython refuses: without MPTCP_FAST_REQUIRE_EXT the install goes on, and the
    modules built before (and kept) are not described as current; with it (CI) the build fails."""
    root = _tree_to_build(tmp_path)
    _require_settings_of_this_build(root)
    with open(root / RTT_SOURCE, "a") as f:     # Python never runs it; Cython cannot compile it
        f.write("\n\ndef _not_for_cython():\n    return cython.cast(cython.no_such_type, 0)\n")
    before = _compiled_files(root)
    record = root / "mptcp_fast" / _manifest.FILENAME
    previous = record.read_text()
    done = _build_in_place(root)
    assert done.returncode == 0, done.stderr
    assert f"{MODULES - 1} current, 1 to build" in _summary(done.stderr)
    assert "building the extensions failed" in done.stderr
    assert not os.path.exists(record)
    assert _compiled_files(root) == before
    backend, warning = _import_backend(root)
    assert backend == "python" and "carry no record of their sources" in warning

    record.write_text(previous)                 # the others current again: only rtt to build
    done = _build_in_place(root, MPTCP_FAST_REQUIRE_EXT="1")
    assert f"{MODULES - 1} current, 1 to build" in _summary(done.stderr)
    assert done.returncode != 0 and "no_such_type" in done.stderr


# --- Cython is for building: the package imports and runs without it ---------------------------

# Every module run by the pure backend that Cython also compiles (in its pure-Python mode).
PURE_MODE = ["mptcp_fast.wire._sender_py", "mptcp_fast.sim.netem", "mptcp_fast.sim.apps"] + [
    f"mptcp_fast.engine.{name}" for name in _backend.ENGINE_MODULES if name not in ("netem", "apps")]
WITHOUT_CYTHON = r"""
import importlib, sys

class NoCython:
    "As if Cython were not installed."
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("cython", "Cython"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoCython())
try:
    import cython
    raise SystemExit("cython imported")
except ImportError:
    pass
import mptcp_fast
from mptcp_fast import _backend
for name in MODULES:
    importlib.import_module(name)
from enginenet import C0, C1, S0, transfer
run = transfer({(C0, S0): dict(rate=50e6, delay=0.01), (C1, S0): dict(rate=20e6, delay=0.02)},
               up=300_000, down=100_000)
run.check_exact(300_000, 100_000)
shim = sys.modules["mptcp_fast._cython_shim"]
uses_shim = sorted(name for name in MODULES if getattr(sys.modules[name], "cython", None) is shim)
print(mptcp_fast.BACKEND, ",".join(uses_shim),
      sorted(name for name in sys.modules if name.partition(".")[0] in ("cython", "Cython")))
"""


@pytest.mark.parametrize("backend_name", [
    "python", pytest.param("cython", marks=pytest.mark.requires("compiled"))])
def test_the_package_imports_and_moves_data_without_cython(backend_name):
    """Cython is a build dependency only: with it made unimportable, the package imports every
    pure-mode source (their ``cython`` is mptcp_fast/_cython_shim.py) and an engine transfer
    arrives byte for byte, on the pure backend and on the compiled one."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])}
    env.pop("MPTCP_FAST_PURE", None)
    if backend_name == "python":
        env["MPTCP_FAST_PURE"] = "1"
    code = f"MODULES = {PURE_MODE!r}\n" + WITHOUT_CYTHON
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    backend, uses_shim, imported = done.stdout.split()
    assert backend == backend_name and imported == "[]"
    with_import = sorted(name for name in PURE_MODE if _imports_cython(name))
    assert uses_shim.split(",") == with_import and len(with_import) == 9


def _imports_cython(module: str) -> bool:
    path = os.path.join(ROOT, *module.split(".")) + ".py"
    with open(path) as f:
        return "    import cython\n" in f.read()


# Every name of ``cython.`` the pure-mode sources use, found in them.
def _cython_names_used() -> set:
    names = set()
    for module in PURE_MODE:
        with open(os.path.join(ROOT, *module.split(".")) + ".py") as f:
            tree = ast.parse(f.read())
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id == "cython"}
    return names


@pytest.mark.requires("cython")
def test_the_shim_behaves_as_cython_shadow_for_every_name_it_has():
    """The pure backend computes the same with Cython installed (its run-time module is
    Cython.Shadow) and without (the shim)."""
    from Cython import Shadow
    from mptcp_fast import _cython_shim as shim
    names = [name for name in vars(shim) if not name.startswith("_")
             and name not in ("annotations",)]
    assert _cython_names_used() <= set(names)
    assert {"compiled", "cast", "longlong", "Py_ssize_t"} <= _cython_names_used()
    assert [name for name in names if not hasattr(Shadow, name)] == []
    assert shim.compiled is Shadow.compiled is False
    samples = [0, 7, -7, 2.7, -2.7, 2**70, True, None, 1e300]
    for name in names:
        shadow_type, shim_type = getattr(Shadow, name), getattr(shim, name)
        if isinstance(shim_type, type):                     # a C type: cast and declare
            for value in samples:
                assert _outcome(Shadow.cast, shadow_type, value) == \
                    _outcome(shim.cast, shim_type, value), (name, value)
                assert _outcome(Shadow.declare, shadow_type, value) == \
                    _outcome(shim.declare, shim_type, value), (name, value)
            assert Shadow.declare(shadow_type) is shim.declare(shim_type) is None
    chunk = (1, 2)
    assert Shadow.cast(tuple, chunk) is shim.cast(tuple, chunk) is chunk
    function = lambda: 1                                    # noqa: E731
    for name in ("cfunc", "ccall", "inline", "final"):
        assert getattr(shim, name)(function) is function is getattr(Shadow, name)(function)
    for name in ("locals", "returns", "exceptval", "boundscheck", "wraparound", "cdivision"):
        assert getattr(shim, name)(False)(function) is function


def _outcome(fn, *args):
    try:
        value = fn(*args)
        return type(value), value
    except Exception as exc:  # noqa: BLE001 — the same error on both sides is what counts
        return type(exc), str(exc)


@pytest.mark.requires("compiled")
@pytest.mark.parametrize("module", [name for name in PURE_MODE if _imports_cython(name)])
def test_cython_compiled_the_pure_mode_sources_typed(module):
    """Cython took their ``import cython`` (in its try/except form) as its compile-time module:
    the compiled module has no run-time ``cython`` (the typing came from it), while the pure
    one runs with Cython's Shadow or the shim."""
    compiled_name = (module.replace("_py", "_c") if module.startswith("mptcp_fast.wire.")
                     else "mptcp_fast._cengine." + module.rsplit(".", 1)[1])
    compiled = importlib.import_module(compiled_name)
    assert isinstance(compiled.__loader__, importlib.machinery.ExtensionFileLoader)
    assert "cython" not in vars(compiled)
    assert importlib.import_module(module).cython.compiled is False
