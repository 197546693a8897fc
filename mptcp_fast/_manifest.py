"""What the compiled modules were built from, and whether a build is still current.

setup.py writes ``_compiled_sources.json`` beside the compiled modules: which source each
module was compiled from, the SHA-256 of every file the build read (each module's source,
and every declaration under pyx/, .pxd and .h, since any of them can change a module's
layout), and the settings it was built with (the Python ABI, Cython's version,
the compiler and its flags). Two readers, one notion of "current":

- at import, ``_backend`` refuses compiled modules whose sources changed after the build
  (:func:`stale_sources`): the pure backend runs the sources as they are;
- at build time, setup.py recompiles only the modules whose inputs changed
  (:func:`current_modules`), so a second ``pip install -e .`` over a current in-place build
  compiles nothing.

Standard library only: setup.py loads this file by its path, before the package (and its
dependencies) can be imported.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

FILENAME = "_compiled_sources.json"
# Declarations every compiled module may read, relative to the project root.
DECLARATION_PATTERNS = ("pyx/**/*.pxd", "pyx/**/*.h")


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def declarations(root: str) -> list[str]:
    """Every shared declaration file under ``root``/pyx, as a path relative to ``root``."""
    found = set()
    for pattern in DECLARATION_PATTERNS:
        for path in glob.glob(os.path.join(root, pattern), recursive=True):
            found.add(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(found)


def record(modules: dict[str, str], settings: dict, root: str) -> dict:
    """The manifest of a build of ``modules`` ({module name: source path}) with ``settings``."""
    files = set(modules.values()) | set(declarations(root))
    return {"modules": dict(modules), "settings": _plain(settings),
            "sha256": {path: sha256(os.path.join(root, path)) for path in sorted(files)}}


def write(path: str, manifest: dict) -> None:
    """Write ``manifest`` in one step (a reader never sees half of it)."""
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(partial, path)


def read(path: str) -> dict | None:
    """The manifest at ``path``, or None if there is none or it is not one."""
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), dict):
        return None
    return manifest


def stale_sources(manifest_path: str, root: str) -> list[str] | None:
    """The source files that changed since the compiled modules were built from them, [] if none
    did, None if the build left no manifest. Files absent here (an installed wheel carries no
    pyx/) are not compared: only a source that is present can disagree with its build."""
    manifest = read(manifest_path)
    if manifest is None:
        return None
    changed = []
    for path, digest in manifest["sha256"].items():
        try:
            if sha256(os.path.join(root, path)) != digest:
                changed.append(path)
        except FileNotFoundError:
            continue
    return changed


def current_modules(manifest_path: str, root: str, modules: dict[str, str],
                    settings: dict) -> set[str]:
    """The names of ``modules`` ({module name: source path}) whose last build is current: built
    with the same ``settings`` from the source they are to be built from now, unchanged since,
    and with every declaration under pyx/ unchanged (none added, none removed). Whether the
    built file itself is still there is the caller's to check."""
    manifest = read(manifest_path)
    if manifest is None or manifest.get("settings") != _plain(settings):
        return set()
    recorded = manifest["sha256"]
    shared = declarations(root)
    if sorted(path for path in recorded if path.startswith("pyx/")
              and path.endswith((".pxd", ".h"))) != shared:
        return set()
    if not all(_unchanged(path, recorded, root) for path in shared):
        return set()
    built_from = manifest.get("modules", {})
    return {name for name, source in modules.items()
            if built_from.get(name) == source and _unchanged(source, recorded, root)}


def settings_current(manifest_path: str, settings: dict) -> bool:
    """Whether the last build used ``settings``: what decides alone for a module built from no
    source of ours (Cython's shared utility module, generated from Cython itself)."""
    manifest = read(manifest_path)
    return manifest is not None and manifest.get("settings") == _plain(settings)


def _unchanged(path: str, recorded: dict, root: str) -> bool:
    try:
        return recorded.get(path) == sha256(os.path.join(root, path))
    except FileNotFoundError:
        return False


def _plain(settings: dict) -> dict:
    """``settings`` as JSON gives it back (tuples become lists), so a recorded copy compares
    equal to the live one."""
    return json.loads(json.dumps(settings, sort_keys=True))
