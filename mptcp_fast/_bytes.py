"""Small helpers shared by both backends (not a hot path themselves)."""

from __future__ import annotations


def as_bytes(data) -> bytes:
    """``data`` as bytes: bytes as they are, any C-contiguous buffer copied once."""
    if type(data) is bytes:
        return data
    try:
        return bytes(memoryview(data).cast("B"))
    except TypeError:
        raise TypeError(f"expected a bytes-like object, not {type(data).__name__}") from None
