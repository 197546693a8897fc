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


def immutable_buffer(data) -> bool:
    """``data`` is bytes, or a flat read-only memoryview of bytes (unsigned bytes, format
    "B"): its content can never change, so a view of it may be kept past the call that
    received it, and the view compares equal to bytes of the same content."""
    if type(data) is bytes:
        return True
    return type(data) is memoryview and type(data.obj) is bytes and data.readonly \
        and data.c_contiguous and data.format == "B" and data.ndim == 1


def compact(piece):
    """``piece`` itself, or a copy of it when it is a view holding less than half of the
    bytes object under it: a cut of a received packet's view that is kept (queued, not yet
    read) then holds at most twice its own size, whatever the peer's segments overlap."""
    if type(piece) is memoryview and type(piece.obj) is bytes and 2 * len(piece) < len(piece.obj):
        return bytes(piece)
    return piece
