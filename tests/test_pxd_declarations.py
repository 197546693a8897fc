"""Every attribute the compiled engine's classes set is declared in their .pxd.

The engine (mptcp_fast/engine/*.py, and sim/netem.py and sim/apps.py) is compiled from the same
source by Cython, typed by pyx/mptcp_fast/_cengine/<module>.pxd. A ``cdef class`` has no
``__dict__``: an attribute its .pxd does not declare is an AttributeError in the compiled build
only, while the pure backend takes it. This reads both with the ast module and a small parser
(no compiler): for each class that a .pxd makes a ``cdef class``, every ``self.X`` the .py
stores (plain, augmented, annotated and unpacking assignments, for and with targets), in its
own methods and in the plain Python mixins it inherits, must be a field of the class or of a
``cdef class`` base (a ``public`` one where a mixin sets it: mixins stay Python code), or a
property.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PXD_DIR = ROOT / "pyx" / "mptcp_fast" / "_cengine"
SOURCE_DIRS = (ROOT / "mptcp_fast" / "engine", ROOT / "mptcp_fast" / "sim")


# -- the .pxd side --------------------------------------------------------------------------------

@dataclass
class PxdClass:
    name: str
    bases: tuple = ()
    fields: set = field(default_factory=set)
    public: set = field(default_factory=set)    # ``public`` fields: Python code may set them
    has_dict: bool = False          # ``cdef dict __dict__``: any attribute may be set


# ``cdef class Name(Base, ...):`` opens a block; without the colon it is a forward declaration.
_CLASS = re.compile(r"^cdef\s+class\s+(\w+)\s*(?:\(([^)]*)\))?\s*:")
# a field line inside a block: ``cdef [public|readonly] TYPE name[, name...]``
_FIELD = re.compile(r"^cdef\s+(?:(public|readonly)\s+)?(.*)$")


def _strip_groups(text: str, opening: str, closing: str) -> str:
    """``text`` without its (possibly nested) ``opening``...``closing`` groups, so that the
    commas of a ctuple type ``(int, int)`` or a memoryview ``int[:, :]`` split no names."""
    out, depth = [], 0
    for ch in text:
        if ch == opening:
            depth += 1
        elif ch == closing and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def field_names(declaration: str) -> list[str]:
    """The names a field declaration (what follows ``cdef [public|readonly]``) declares:
    ``long long seq, end`` -> [seq, end]. Its first comma-separated part is the type followed
    by the first name; the others are names (a pointer's ``*`` belongs to the name's part)."""
    declaration = _strip_groups(_strip_groups(declaration, "[", "]"), "(", ")")
    parts = [p.strip().replace("*", " ") for p in declaration.split(",")]
    names = [parts[0].split()[-1]] + [p.split()[-1] for p in parts[1:] if p.split()]
    return [n for n in names if n.isidentifier()]


def parse_pxd(text: str) -> dict[str, PxdClass]:
    """The ``cdef class`` blocks of a .pxd and the attributes each declares.

    A block is the lines indented under ``cdef class X:`` (or ``cdef class X(Base):``) up to
    the next line at column 0. Inside it, ``cdef`` lines are fields; ``cpdef`` lines, ``cdef``
    lines with a parameter list (C methods), decorators and a declaration's continuation lines
    declare no field.
    """
    classes: dict[str, PxdClass] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():                       # column 0: a block ends
            current = None
            opened = _CLASS.match(line)
            if opened:
                bases = tuple(b.strip() for b in (opened.group(2) or "").split(",") if b.strip())
                current = classes[opened.group(1)] = PxdClass(opened.group(1), bases)
            continue
        if current is None:
            continue
        declared = _FIELD.match(line.strip())
        if declared is None or line.strip().startswith(("cdef class", "cdef inline")):
            continue
        visibility, declaration = declared.groups()
        if re.search(r"\w\s*\(", _strip_groups(declaration, "[", "]")):
            continue                                   # a C method: ``cdef int f(self)``
        names = field_names(declaration)
        if "__dict__" in names:
            current.has_dict = True
        current.fields.update(names)
        if visibility == "public":
            current.public.update(names)
    return classes


# -- the .py side ---------------------------------------------------------------------------------

def stored_attributes(cls: ast.ClassDef) -> dict[str, int]:
    """``self.X`` stored anywhere in the methods of ``cls`` -> the first line that stores it.
    ``self`` is each method's first parameter; static and class methods have none."""
    stored: dict[str, int] = {}
    for method in cls.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) or not method.args.args:
            continue
        decorators = {ast.unparse(d) for d in method.decorator_list}
        if decorators & {"staticmethod", "classmethod"}:
            continue
        me = method.args.args[0].arg
        for node in ast.walk(method):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id == me:
                stored.setdefault(node.attr, node.lineno)
    return stored


def properties(cls: ast.ClassDef) -> set[str]:
    """Names the class defines as properties (a property's setter takes ``self.X = v``)."""
    return {f.name for f in cls.body if isinstance(f, ast.FunctionDef)
            and any("property" in ast.unparse(d) or ".setter" in ast.unparse(d)
                    for d in f.decorator_list)}


def undeclared(sources: dict[str, str], pxds: dict[str, str]) -> list[str]:
    """``module.Class.attr (file line N)`` for each attribute a compiled class stores that its
    .pxd does not declare. The class's own methods are compiled with it and may set any
    declared field; a mixin's methods stay Python code, which reaches only ``public`` fields.
    ``sources``: module name -> .py text (mixins are looked up in all of them by class name);
    ``pxds``: module name -> .pxd text (bases are looked up in all of them:
    ``cdef class Connection(SubflowOwner)`` names a class of subflow.pxd)."""
    py_classes: dict[str, tuple[str, ast.ClassDef]] = {}
    for module, text in sources.items():
        for node in ast.parse(text).body:
            if isinstance(node, ast.ClassDef):
                py_classes.setdefault(node.name, (module, node))
    cdef_classes: dict[str, PxdClass] = {}
    compiled: list[tuple[str, str]] = []
    for module, text in pxds.items():
        for name, declared in parse_pxd(text).items():
            cdef_classes[name] = declared
            compiled.append((module, name))

    def chain(name: str) -> list[PxdClass]:        # the class and its cdef bases, nearest first
        out = []
        while name in cdef_classes:
            out.append(cdef_classes[name])
            name = cdef_classes[name].bases[0] if cdef_classes[name].bases else ""
        return out

    def mixins(cls: ast.ClassDef) -> list[ast.ClassDef]:
        """Plain Python bases (not cdef classes) that the sources define: their methods run on
        the compiled instance."""
        found = []
        for base in cls.bases:
            name = ast.unparse(base).rsplit(".", 1)[-1]
            if name in py_classes and name not in cdef_classes:
                mixin = py_classes[name][1]
                found += [mixin] + mixins(mixin)
        return found

    problems = []
    for module, name in compiled:
        if name not in py_classes or py_classes[name][0] != module:
            continue                                   # declared for a class made elsewhere
        cls = py_classes[name][1]
        ancestry = chain(name)
        if any(c.has_dict for c in ancestry):
            continue
        declared = set().union(*(c.fields for c in ancestry))
        public = set().union(*(c.public for c in ancestry))
        settable = set()
        for bearer in [cls] + mixins(cls) + [py_classes[c.name][1] for c in ancestry[1:]
                                             if c.name in py_classes]:
            settable |= properties(bearer)
        for bearer in [cls] + mixins(cls):
            allowed = settable | (declared if bearer is cls else public)
            for attr, line in stored_attributes(bearer).items():
                if attr not in allowed:
                    owner = py_classes[bearer.name][0]
                    why = "" if attr not in declared else ", not public"
                    problems.append(f"{module}.{name}.{attr} ({owner}.py line {line}{why})")
    return sorted(problems)


def _tree() -> tuple[dict[str, str], dict[str, str]]:
    sources = {p.stem: p.read_text() for d in SOURCE_DIRS for p in sorted(d.glob("*.py"))}
    pxds = {p.stem: p.read_text() for p in sorted(PXD_DIR.glob("*.pxd")) if p.stem != "__init__"}
    return sources, pxds


# -- the tests ------------------------------------------------------------------------------------

def test_every_attribute_the_compiled_classes_set_is_declared():
    sources, pxds = _tree()
    assert set(pxds) <= set(sources), "a .pxd without its engine source"
    checked = [name for text in pxds.values() for name in parse_pxd(text)]
    assert {"Subflow", "Connection", "SubflowOwner", "PathManager", "Fallback", "Endpoint",
            "Network", "BulkApp"} <= set(checked)
    stores = [a for text in sources.values() for node in ast.parse(text).body
              if isinstance(node, ast.ClassDef) and node.name in checked
              for a in stored_attributes(node)]
    assert len(stores) > 200, "the checker saw too few attributes: is it reading the classes?"
    assert undeclared(sources, pxds) == []


def test_the_pxd_parser_reads_fields_bases_and_skips_methods():
    pxd = textwrap.dedent("""\
        cimport cython
        from mptcp_fast._cengine.cc cimport (Controller,
                                             Window)

        cdef class Later


        @cython.final
        cdef class Base:
            cdef public long long seq, end     # two names, one type
            cdef readonly object data
            cdef double* rates, *weights
            cdef (int, int) pair
            cdef int[:, :] grid
            cpdef bint in_pipe(self, long long a,
                               long long b)
            @cython.locals(x=int)
            cdef int _helper(self, int x)

        cdef class Child(Base):
            cdef dict __dict__
        cdef object _module_function(bytes packet)
        """)
    classes = parse_pxd(pxd)
    assert set(classes) == {"Base", "Child"}                    # a forward declaration is none
    assert classes["Base"].fields == {"seq", "end", "data", "rates", "weights", "pair", "grid"}
    assert classes["Base"].public == {"seq", "end"}
    assert classes["Base"].bases == () and not classes["Base"].has_dict
    assert classes["Child"].bases == ("Base",) and classes["Child"].has_dict


def test_the_checker_finds_what_a_compiled_build_would_refuse():
    pxd = textwrap.dedent("""\
        cdef class State:
            cdef public long x, y
            cdef long hidden
        cdef class Conn(State):
            cdef public object z
        cdef class Open:
            cdef dict __dict__
        """)
    source = textwrap.dedent("""\
        class Mixin:
            def mix(self):
                self.z = 1              # declared on Conn
                self.from_mixin = 2     # not declared
                self.hidden = 3         # declared, but not public: Python code cannot set it

        class State:
            def __init__(self):
                self.x = 0
                self.hidden = 0         # compiled with State: a private field is fine

        class Conn(State, Mixin):
            def __init__(self):
                self.x, (self.y, self.pair) = 1, (2, 3)
                self.y += 1
                self.total += 1
                self.count: int = 0
                for self.z in range(3):
                    pass
                self.shown = True       # a property with a setter: allowed

            @property
            def shown(self):
                return True

            @shown.setter
            def shown(self, value):
                pass

            @staticmethod
            def make(self):
                self.anything = 1       # not an instance: a static method's argument

        class Open:
            def __init__(self):
                self.anything = 1

        class NotCompiled:
            def __init__(self):
                self.anything = 1
        """)
    assert undeclared({"conn": source}, {"conn": pxd}) == [
        "conn.Conn.count (conn.py line 17)",
        "conn.Conn.from_mixin (conn.py line 4)",
        "conn.Conn.hidden (conn.py line 5, not public)",
        "conn.Conn.pair (conn.py line 14)",
        "conn.Conn.total (conn.py line 16)",
    ]
