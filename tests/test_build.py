"""A build that cannot lie: a compiled module whose source changed after it was built is not
used. setup.py records each compiled module's source files and their SHA-256 beside the modules
(``_compiled_sources.json``); ``mptcp_fast._backend`` compares them with the sources it finds at
import, and on a difference warns once and runs the pure-Python backend, which runs the sources
as they are (an edit to ``engine/connection.py`` after an editable install would otherwise
change nothing on the default backend)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from mptcp_fast import _backend

PACKAGE = os.path.dirname(os.path.abspath(_backend.__file__))
ROOT = os.path.dirname(PACKAGE)


def _manifest(root, files: list) -> str:
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
    manifest = _manifest(str(tmp_path), ["a.py", "a.pxd", "b.py", "shared.pxd"])
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
    manifest = _manifest(str(tmp_path), ["a.py", "a.pxd"])
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
