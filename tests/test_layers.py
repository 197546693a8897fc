"""The layers of docs/design.md, held against the code: every import of a module of mptcp_fast
points to its own layer or one below it, never up.

    cli        the mptcp-fast command
    testing    kernel testbeds, kernel captures, the conformance suite
    net  sim   the real network (TUN, asyncio, kernel sockets) | virtual time (netem, apps, ...)
    engine  analysis   the sans-IO MPTCP engine | the capture analyzer
    wire       options, packets, crypto, sequence numbers, DSS, the receive pipeline, segments
    ground     errors, argument checks, the backend switch, the types the API takes

Layers on one line are side by side: neither imports the other. A module's twins sit in its
layer's package (mptcp_fast/wire/_options_py.py, compiled from pyx/mptcp_fast/wire/_options_c.pyx
as mptcp_fast.wire._options_c); the compiled engine, mptcp_fast._cengine, belongs to the layer
of the source each of its modules is compiled from (engine/, or sim/ for netem and apps).
Imports are read from the source (ast), including the ones inside functions; the compiled
sources under pyx/ are read for their imports and cimports too.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

import mptcp_fast

PACKAGE = os.path.dirname(os.path.abspath(mptcp_fast.__file__))

RANK = {"ground": 0, "wire": 1, "engine": 2, "analysis": 2, "net": 3, "sim": 3, "testing": 4,
        "cli": 5, "face": 6}
GROUND = {"errors", "_check", "_bytes", "_backend", "_version", "_typing", "_manifest",
          "_cython_shim", "_lazy"}
PYX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyx")
# The compiled engine's modules compiled from the emulator's sources (setup.py's SIMULATION).
SIMULATION = {"netem": "sim", "apps": "sim"}


def layer(module: str) -> str:
    """The layer of ``mptcp_fast.<...>``."""
    parts = module.split(".")[1:]
    if not parts or parts[0] == "__main__":
        return "face"                    # the package's own face: BACKEND, errors, wire modules
    head = parts[0]
    if head in GROUND:
        return "ground"
    if head == "_cengine":
        if len(parts) == 1:
            return "ground"              # the package itself holds no code
        return SIMULATION.get(parts[1], "engine")
    return head


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                package = dotted.rsplit(".", 1)[0]
                if name == "__init__.py":
                    dotted = package
                yield path, dotted, package


def _is_module(dotted: str) -> bool:
    path = os.path.join(os.path.dirname(PACKAGE), *dotted.split("."))
    return os.path.exists(path + ".py") or os.path.isdir(path)


def imports(path: str, package: str):
    """(line, module) for every mptcp_fast module the file at ``path`` imports."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield node.lineno, full if _is_module(full) else source
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


# ``from mptcp_fast.x import y`` / ``cimport`` / ``import mptcp_fast.x`` in a .pyx or .pxd
_PYX_IMPORT = re.compile(r"^\s*(?:from\s+(mptcp_fast[\w.]*)\s+c?import\s+([\w, ()]+)"
                         r"|c?import\s+(mptcp_fast[\w.]*))", re.M)


def _compiled_sources():
    """(path, dotted, package) for every .pyx/.pxd under pyx/mptcp_fast: pyx/ mirrors the
    package by the compiled modules' dotted names."""
    for folder, _, files in os.walk(os.path.join(PYX, "mptcp_fast")):
        for name in files:
            if name.endswith((".pyx", ".pxd")) and not name.startswith("__init__"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, PYX).rsplit(".", 1)[0].replace(os.sep, ".")
                yield path, dotted, dotted.rsplit(".", 1)[0]


def compiled_imports(path: str):
    """(line, module) for every mptcp_fast module a .pyx/.pxd file imports or cimports."""
    with open(path) as f:
        text = f.read()
    for match in _PYX_IMPORT.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if match.group(3):
            yield line, match.group(3)
            continue
        source = match.group(1)
        for name in match.group(2).replace("(", " ").replace(")", " ").split(","):
            name = name.split()[0] if name.split() else ""
            full = f"{source}.{name}"
            yield line, full if name and _is_module(full) else source


def upward_imports() -> list[str]:
    found = []
    sources = [(path, dotted, imports(path, package)) for path, dotted, package in _modules()]
    sources += [(path, dotted, compiled_imports(path)) for path, dotted, _ in _compiled_sources()]
    for path, dotted, found_imports in sources:
        here = layer(dotted)
        for line, target in found_imports:
            if target != "mptcp_fast" and not target.startswith("mptcp_fast."):
                continue
            there = layer(target)
            if RANK[there] > RANK[here] or (RANK[there] == RANK[here] and there != here):
                found.append(f"{_shown(path)}:{line} ({here}) imports "
                             f"{target} ({there})")
    return found


def _shown(path: str) -> str:
    """A path relative to the package, or for a compiled source to pyx/."""
    inside_pyx = os.path.commonpath([path, PYX]) == PYX
    return os.path.relpath(path, os.path.dirname(PYX) if inside_pyx else PACKAGE)


def test_every_import_points_to_its_own_layer_or_below():
    assert upward_imports() == []


def test_the_checker_sees_an_upward_and_a_sideways_import(tmp_path, monkeypatch):
    """The check can fail: a wire module importing the engine (in Python and in a compiled
    source), an engine module the analyzer."""
    fake = tmp_path / "mptcp_fast"
    for folder, text in [("wire", "from ..engine import Endpoint\n"),
                         ("engine", "from mptcp_fast.analysis import capture\n"),
                         ("analysis", "from ..wire import options\n")]:
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
        (fake / folder / "x.py").write_text(text)
    (fake / "__init__.py").write_text("")
    compiled = tmp_path / "pyx" / "mptcp_fast" / "wire"
    compiled.mkdir(parents=True)
    (compiled / "_x_c.pyx").write_text("from libc.stdint cimport uint8_t\n"
                                       "from mptcp_fast.engine cimport subflow\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", str(fake))
    monkeypatch.setattr(__import__(__name__), "PYX", str(tmp_path / "pyx"))
    found = upward_imports()
    assert sorted(found) == [
        "engine/x.py:1 (engine) imports mptcp_fast.analysis (analysis)",
        "pyx/mptcp_fast/wire/_x_c.pyx:2 (wire) imports mptcp_fast.engine (engine)",
        "wire/x.py:1 (wire) imports mptcp_fast.engine (engine)"]


@pytest.mark.parametrize("module, expected", [
    ("mptcp_fast.wire.options", "wire"), ("mptcp_fast.wire._options_py", "wire"),
    ("mptcp_fast.analysis._pcap_py", "analysis"), ("mptcp_fast.wire._options_c", "wire"),
    ("mptcp_fast.analysis._tracking_c", "analysis"), ("mptcp_fast._cengine.connection", "engine"),
    ("mptcp_fast._cengine.netem", "sim"), ("mptcp_fast.errors", "ground"),
    ("mptcp_fast._backend", "ground"), ("mptcp_fast.cli.net", "cli"), ("mptcp_fast", "face")])
def test_each_module_has_its_layer(module, expected):
    assert layer(module) == expected
