"""The names of Cython's pure-Python mode, for running the pure-mode sources without Cython.

Some modules are one source for both backends: run as they are by the pure backend, and
compiled by Cython in its pure-Python mode (the sender, ``wire/_sender_py.py``; the engine's
per-packet modules, ``_backend.ENGINE_MODULES``). They use a few names of the ``cython``
module (``cython.compiled``, ``cython.cast``, C type names in annotations). Cython is needed
to build the compiled backend, not to run the pure one, so those modules import it as::

    try:
        import cython
    except ImportError:                     # no Cython installed: the pure backend needs none
        from .. import _cython_shim as cython

When Cython compiles such a module, ``import cython`` is its compile-time module and this
file is never read; when the pure backend runs one with Cython installed, ``cython`` is
Cython's own run-time stand-in, ``Cython.Shadow``. This shim behaves as ``Cython.Shadow``
does for every name it defines (``tests/test_build.py`` holds the two side by side), so the
pure backend computes the same with or without Cython.
"""

from __future__ import annotations

import builtins as _builtins

# Not compiled: the ``if cython.compiled:`` branches are C-only arithmetic.
compiled = False

# C types as Cython.Shadow maps them: to the Python type that holds their values. Only a cast
# converts (an annotated local is a plain Python object in the pure run).
bint = bool
char = schar = uchar = short = ushort = sint = uint = long = ulong = _builtins.int
longlong = ulonglong = Py_ssize_t = Py_hash_t = size_t = ssize_t = ptrdiff_t = _builtins.int
int = _builtins.int
float = double = longdouble = _builtins.float


def cast(type_, value, *, typecheck: bool = False):
    """``cython.cast(type_, value)`` in the pure run: the value itself when it already is a
    ``type_`` (or is None), otherwise ``type_(value)``: ``cast(longlong, 2.7)`` is 2, truncated
    as C truncates, but nothing wraps to 64 bits (as in Cython.Shadow)."""
    if isinstance(type_, type) and not (value is None or isinstance(value, type_)):
        return type_(value)
    return value


_NO_VALUE = object()


def declare(type_=None, value=_NO_VALUE, **attributes):
    """``cython.declare(type_, value)``: the value, cast; None without one (a C variable
    declared but not set is no Python value)."""
    return None if value is _NO_VALUE else cast(type_, value)


def _unchanged(function):
    return function


def _unchanged_by(*args, **kwargs):
    return _unchanged


# Decorators that change nothing in the pure run: @cython.cfunc, @cython.locals(n=cython.int),
# and compiler directives written as decorators (@cython.boundscheck(False)).
cfunc = ccall = inline = final = _unchanged
locals = returns = exceptval = _unchanged_by
boundscheck = wraparound = cdivision = initializedcheck = nonecheck = _unchanged_by
