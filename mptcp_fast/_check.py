"""Argument checks at the public API, one rule and one message for both backends.

The rule: a wrong type is a ``TypeError`` and a wrong value a ``ValueError``.
Integers may be Python ints or numpy integers; ``bool`` and floats are refused, so that
``push(1.0, ...)`` or ``data_fin(1.5)`` fail the same way everywhere instead of being
truncated by one backend. The compiled twins call these functions on their slow path (when
the fast C conversion does not apply), so the messages are the same text on both.

numpy is never imported here: a value can only be a numpy scalar once numpy was imported
(by the caller, or by the batch functions that need it), so the checks look for it in
``sys.modules``. Importing the engine then costs no numpy import (a tenth of a second, and
the BLAS threads it starts).
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import sys

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1


def _is_numpy(value, kind: str) -> bool:
    """Whether ``value`` is an instance of numpy's ``kind`` (numpy imported, else it cannot be)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, getattr(np, kind))


def integer(name: str, value) -> int:
    """``value`` as a Python int; TypeError for anything that is not an integer."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not (isinstance(value, int) or _is_numpy(value, "integer")):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return operator.index(value)


def in_range(name: str, value, low: int, high: int) -> int:
    """An integer with ``low <= value <= high``, else ValueError naming the range."""
    value = integer(name, value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


def uint(name: str, value, bits: int) -> int:
    """An unsigned integer of ``bits`` bits."""
    return in_range(name, value, 0, (1 << bits) - 1)


def instance(name: str, value, cls):
    """``value`` if it is a ``cls`` (subclasses included), else TypeError naming both; None
    is refused like any other wrong type (a compiled class's C fields are read through it)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
    return value


def flag(name: str, value) -> bool:
    """A bool (numpy bools included); TypeError for anything else, None included."""
    if type(value) is bool:
        return value
    if _is_numpy(value, "bool_"):
        return bool(value)
    raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def byte_length(name: str, data) -> int:
    """The length in bytes of a C-contiguous one-dimensional buffer (any item size)."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not {type(data).__name__}") from None
    with view:
        if not view.c_contiguous:
            raise ValueError(f"{name} must be a contiguous buffer")
        return view.nbytes


def address(name: str, value, sizes=(4, 16)) -> bytes:
    """An IP address as packed bytes: "198.18.0.1", "2001:2::1", an ipaddress object, or
    already packed bytes of an allowed size."""
    if type(value) is bytes and len(value) in sizes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if len(value) not in sizes:
            raise ValueError(f"{name} must be {' or '.join(map(str, sizes))} bytes, got {len(value)}")
        return value
    try:
        if type(value) is str:
            return _packed_text(value)
        return ipaddress.ip_address(value).packed
    except ValueError:
        raise ValueError(f"{name} must be an IPv4 or IPv6 address, got {value!r}") from None


@functools.lru_cache(maxsize=1024)
def _packed_text(text: str) -> bytes:
    """A text address, packed: parsed once (an application gives the same few, "198.18.0.2",
    to every connect; ipaddress takes microseconds). A ValueError is not remembered."""
    return ipaddress.ip_address(text).packed


def exact_bytes(name: str, value) -> bytes:
    """A ``bytes`` argument, exactly (a compiled twin reads its pointer: None, bytearray and
    memoryview are refused there, so here too)."""
    if type(value) is not bytes:
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return value


def packed_address(name: str, value) -> bytes:
    """A packed IPv4 or IPv6 address given as ``bytes`` of 4 or 16 (a compiled twin copies it
    into a fixed-size buffer, so any other length is refused before that)."""
    exact_bytes(name, value)
    if len(value) not in (4, 16):
        raise ValueError(f"{name} must be 4 or 16 bytes, got {len(value)}")
    return value
