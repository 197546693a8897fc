"""The layers of docs/design.md, held against the code: every import of a module of mptcp_fast
points to its own layer or one below it, never up.

    cli        the mptcp-fast command
    testing    kernel testbeds, kernel captures, the conformance suite
    net  sim   the real network (TUN, asyncio, kernel sockets) | virtual time (netem, apps, ...)
    engine  analysis   the sans-IO MPTCP engine | the capture analyzer
    wire       options, packets, crypto, sequence numbers, DSS, the receive pipeline, segments
    ground     errors, argument checks, the backend switch

Layers on one line are side by side: neither imports the other. A module's twins (the pure
ones in mptcp_fast/_pure, the compiled engine in mptcp_fast/_cengine) belong to its layer.
Imports are read from the source (ast), including the ones inside functions.
"""

from __future__ import annotations

import ast
import os

import pytest

import mptcp_fast
from mptcp_fast import _backend

PACKAGE = os.path.dirname(os.path.abspath(mptcp_fast.__file__))

RANK = {"ground": 0, "wire": 1, "engine": 2, "analysis": 2, "net": 3, "sim": 3, "testing": 4,
        "cli": 5, "face": 6}
GROUND = {"errors", "_check", "_bytes", "_backend", "_version"}
# The twins of mptcp_fast/_pure and mptcp_fast._cengine, by the layer of the module they serve.
TWINS = {"_pcap": "analysis", "_tracking": "analysis", "netem": "sim", "apps": "sim"}


def layer(module: str) -> str:
    """The layer of ``mptcp_fast.<...>``."""
    parts = module.split(".")[1:]
    if not parts or parts[0] == "__main__":
        return "face"                    # the package's own face: BACKEND, errors, wire modules
    head = parts[0]
    if head in GROUND:
        return "ground"
    if head in ("_pure", "_cengine"):
        if len(parts) == 1:
            return "ground"              # the packages themselves hold no code
        return TWINS.get(parts[1], "engine" if head == "_cengine" else "wire")
    if head in _backend.EXTENSIONS:
        return TWINS.get(head, "wire")   # a compiled twin: mptcp_fast._options, ...
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


def upward_imports() -> list[str]:
    found = []
    for path, dotted, package in _modules():
        here = layer(dotted)
        for line, target in imports(path, package):
            if target != "mptcp_fast" and not target.startswith("mptcp_fast."):
                continue
            there = layer(target)
            if RANK[there] > RANK[here] or (RANK[there] == RANK[here] and there != here):
                found.append(f"{os.path.relpath(path, PACKAGE)}:{line} ({here}) imports "
                             f"{target} ({there})")
    return found


def test_every_import_points_to_its_own_layer_or_below():
    assert upward_imports() == []


def test_the_checker_sees_an_upward_and_a_sideways_import(tmp_path, monkeypatch):
    """The check can fail: a wire module importing the engine, an engine module the analyzer."""
    fake = tmp_path / "mptcp_fast"
    for folder, text in [("wire", "from ..engine import Endpoint\n"),
                         ("engine", "from mptcp_fast.analysis import capture\n"),
                         ("analysis", "from ..wire import options\n")]:
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
        (fake / folder / "x.py").write_text(text)
    (fake / "__init__.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", str(fake))
    found = upward_imports()
    assert sorted(found) == [
        "engine/x.py:1 (engine) imports mptcp_fast.analysis (analysis)",
        "wire/x.py:1 (wire) imports mptcp_fast.engine (engine)"]


@pytest.mark.parametrize("module, expected", [
    ("mptcp_fast.wire.options", "wire"), ("mptcp_fast._pure._options", "wire"),
    ("mptcp_fast._pure._pcap", "analysis"), ("mptcp_fast._options", "wire"),
    ("mptcp_fast._tracking", "analysis"), ("mptcp_fast._cengine.connection", "engine"),
    ("mptcp_fast._cengine.netem", "sim"), ("mptcp_fast.errors", "ground"),
    ("mptcp_fast._backend", "ground"), ("mptcp_fast.cli.net", "cli"), ("mptcp_fast", "face")])
def test_each_module_has_its_layer(module, expected):
    assert layer(module) == expected
