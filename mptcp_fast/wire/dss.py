"""The data sequence: 32/64-bit DSNs, DSS checksums, mappings and reassembly.

Facts: RFC 8684 §3.3.1 (64-bit DSNs, 32-bit ones promoted; the DSS checksum over a
pseudo-header of DSN(64) | relative subflow sequence(32) | data-level length(16) |
zero(16) and the mapped payload; the infinite mapping has length 0 and checksum 0),
§3.3.3 (a DATA_FIN occupies one DSN and is counted in the data-level length),
§3.3.4 and §3.3.6 (one data-level receive queue fed by every subflow; reinjected
copies are duplicates), Linux's __mptcp_expand_seq (how 32-bit values are promoted:
the candidate nearest the last 64-bit value), and RFC 1982 serial arithmetic with the
boundary at 2**63 decided once in mptcp_fast.wire.serial.

Hot paths have two twins (pyx/mptcp_fast/wire/_dss_c.pyx, wire/_dss_py.py): ``expand_seq``,
``DssChecksum`` / ``dss_checksum`` and ``ReassemblyQueue`` below are the active
backend's, and so is ``SubflowMappings``. ``expand_seq_array`` is numpy (one vectorised
implementation); the sender's ``DsnAllocator`` has one source compiled for the compiled
backend (mptcp_fast/wire/_sender_py.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mptcp_fast._lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")        # imported by the first batch over arrays (_lazy.py)

from .. import _check
from ._dss_common import WHOLE_PIECE, Mapping, SentRange  # noqa: F401  (exported; defined once there)
from .serial import seq32_diff, seq64_diff
from ..errors import MappingConflict, UnmappedData

if TYPE_CHECKING:
    from .._typing import BytesLike

__all__ = [
    "seq32_before", "seq32_after", "seq32_diff", "seq64_diff", "expand_seq", "expand_seq_array",
    "dss_checksum", "verify_dss_checksum", "DssChecksum", "ReassemblyQueue",
    "Mapping", "MappingConflict", "UnmappedData", "SubflowMappings", "DsnAllocator",
    "WHOLE_PIECE",
]

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1


# ------------------------------------------------------------------------------------------------
# sequence arithmetic (RFC 1982; RFC 9293 §3.4, "before"/"after" as Linux defines them).
# seq32_diff and seq64_diff come from mptcp_fast.wire.serial, which states the rule at 2**63.

def seq32_before(a: int, b: int) -> bool:
    """Whether the 32-bit sequence number ``a`` comes before ``b`` (RFC 1982)."""
    return seq32_diff(a, b) < 0


def seq32_after(a: int, b: int) -> bool:
    """Whether the 32-bit sequence number ``a`` comes after ``b`` (RFC 1982)."""
    return seq32_diff(a, b) > 0


def expand_seq(reference: int, value32: int) -> int:
    """Promote a 32-bit DSN or data ACK to 64 bits next to ``reference`` (Linux's
    __mptcp_expand_seq).

    The result has the low 32 bits ``value32`` and the upper bits of ``reference``,
    moved one step up or down when the low half wrapped (the candidate nearest the
    reference on the 32-bit circle, exactly as Linux's __mptcp_expand_seq).
    """
    if type(reference) is not int or not 0 <= reference <= _MASK64:
        reference = _check.uint("reference", reference, 64)
    if type(value32) is not int or not 0 <= value32 <= _MASK32:
        value32 = _check.uint("value32", value32, 32)
    return _impl.expand_seq(reference, value32)


def _u64_array(name: str, values: Any) -> np.ndarray:
    """Unsigned 64-bit values as an array: TypeError for non-integers, ValueError for a value
    below 0 or at or above 2**64 (never numpy's OverflowError or a silent wrap)."""
    arr = np.asarray(values)
    if arr.dtype == object:              # Python ints too large for any numpy integer type
        flat = [_check.uint(name, v, 64) for v in arr.ravel()]
        return np.array(flat, dtype=np.uint64).reshape(arr.shape)
    if arr.dtype.kind not in "ui":
        if arr.size == 0:
            return arr.astype(np.uint64)
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be in 0..{_MASK64}, got {int(arr.min())}")
    return arr.astype(np.uint64, copy=False)


def expand_seq_array(reference: Any, values: Any) -> np.ndarray:
    """``expand_seq`` over numpy arrays: ``reference`` a scalar or an array like ``values``
    (only the low 32 bits of ``values`` are read)."""
    ref = _u64_array("reference", reference)
    cur = _u64_array("values", values) & np.uint64(_MASK32)
    old32 = ref & np.uint64(_MASK32)
    candidate = (ref & np.uint64(_MASK64 ^ _MASK32)) + cur
    forward = (cur < old32) & (((old32 - cur) & np.uint64(_MASK32)) >= np.uint64(0x80000000))
    backward = (cur > old32) & (((cur - old32) & np.uint64(_MASK32)) >= np.uint64(0x80000000))
    step = np.uint64(1 << 32)
    with np.errstate(over="ignore"):
        return np.where(forward, candidate + step, np.where(backward, candidate - step, candidate))


# ------------------------------------------------------------------------------------------------
# DSS checksum

def dss_checksum(dsn: int, subflow_seq: int, data_len: int, payload: BytesLike) -> int:
    """The DSS checksum of a mapping (RFC 8684 §3.3.1).

    ``dsn`` is always the 64-bit value; ``data_len`` is the option's Data-Level
    Length (a DATA_FIN counts one); ``payload`` the mapped bytes. The infinite
    mapping (``data_len`` 0) has checksum 0.
    """
    if data_len == 0:
        return 0
    return _impl.dss_checksum(dsn, subflow_seq, data_len, payload)


def verify_dss_checksum(dsn: int, subflow_seq: int, data_len: int, payload: BytesLike,
                        checksum: int) -> bool:
    """Whether ``checksum`` is the DSS checksum of the mapping (``dss_checksum``'s
    arguments)."""
    return dss_checksum(dsn, subflow_seq, data_len, payload) == checksum


# ------------------------------------------------------------------------------------------------
# backend binding

if TYPE_CHECKING:
    # For type checkers: the classes are the pure twins' (the compiled twins have the same
    # methods, results and errors: the parity tests hold it).
    from ._dss_py import DssChecksum, ReassemblyQueue, SubflowMappings
    from ._sender_py import DsnAllocator
else:
    DssChecksum = ReassemblyQueue = SubflowMappings = DsnAllocator = None
_impl: Any = None


def _bind(impl: Any) -> None:
    """DssChecksum, ReassemblyQueue and SubflowMappings are the active backend's classes
    (same API, results and errors on both):

    ``DssChecksum()``: ``update(piece)`` with payload pieces of any length (odd ones
    included; any C-contiguous buffer, counted in bytes), ``finish(dsn, subflow_seq,
    data_len) -> int``, ``length``.

    ``ReassemblyQueue(initial_dsn, window=1 MiB)``: ``push(dsn, data) -> new bytes
    accepted`` in any order; duplicate and overlapping pieces are trimmed, bytes that
    differ where they overlap are counted in ``conflict_bytes`` and listed in
    ``conflicts`` (the first copy wins); data beyond the window (counted from the
    first unread byte) or beyond the DATA_FIN is refused (once the stream is whole up to
    its DATA_FIN, bytes below it are duplicates, not refused) and counted in
    ``refused_bytes``, and so is a piece that would end 2**63 or more past the initial
    DSN (mptcp_fast.wire.serial: outside every window). ``data_fin(dsn)`` (ProtocolError
    when it moves, lies below data received, or is 2**63 away); ``read(max_bytes=-1) ->
    bytes`` (in-order data, joined once); ``data_ack``, ``eof``, ``queued_bytes``,
    ``window_left``, ``window``; ``grow_window(window)`` makes the window larger (never
    smaller: ValueError; the right edge never moves back); counters
    ``out_of_order_bytes``, ``duplicate_bytes``, ``peak_queued_bytes``.
    ``push_many(dsns, pieces)`` pushes many in one call;
    ``read_pieces()`` hands the in-order data back as a list of pieces without copying.
    ``skip_to(dsn) -> bytes passed over``: a hole that will never be filled (a capture's
    analysis: bytes the capture missed): the queue goes on from ``dsn``; the in-order bytes
    must have been read first (ValueError), and ``dsn`` must not lie beyond the DATA_FIN,
    outside any window or past queued bytes (ValueError).
    ``window`` is 1..2**62.

    ``SubflowMappings()``: the mappings received on one subflow. ``declare(Mapping)`` (or
    ``declare_fields(dsn, subflow_seq, length, data_fin=False, checksum=None)``) records
    one and returns whether it mapped a subflow byte that no mapping had mapped before
    (False for retransmissions, TSO splits and sub-ranges of what is known); a mapping
    that puts known bytes at other DSNs raises MappingConflict (sending a mapping again
    with a DATA_FIN added, as Linux does, is not a contradiction). ``resolve(subflow_seq,
    length) -> [(dsn, length), ...]`` (contiguous DSN runs merged; UnmappedData where no
    mapping covers a byte); ``release(upto)`` forgets the bytes mapped at or before
    ``upto``, so memory follows the receive window; ``infinite`` is the infinite mapping
    once declared; ``len()`` counts the stored pieces (consistent mappings that touch on
    one DSN line are stored as one). Subflow sequence numbers are relative (first payload
    byte 1), already expanded beyond 32 bits by the caller, and below 2**63.

    Arguments: integers are Python ints or numpy integers; a wrong type raises TypeError
    (floats and bools included) and a value out of range ValueError, with the same message
    on both backends (mptcp_fast._check).
    """
    global _impl
    _impl = impl
    # through globals(): to a type checker these names are the pure classes, not variables
    globals().update(DssChecksum=impl.DssChecksum, ReassemblyQueue=impl.ReassemblyQueue,
                     SubflowMappings=impl.SubflowMappings)


def _bind_sender(impl: Any) -> None:
    """``DsnAllocator(initial_dsn)`` is the active backend's (one source, mptcp_fast/wire/
    _sender_py.py, compiled by Cython for the compiled backend): ``allocate(subflow,
    subflow_seq, length) -> Mapping`` (``allocate_dsn`` -> the first DSN) hands out the next
    DSNs; ``resend(dsn, length, subflow, subflow_seq)`` records a reinjection;
    ``acknowledge(data_ack)`` takes a DATA_ACK (one behind or beyond what was sent is
    ignored, as Linux does) in O(1) plus the records it retires; ``outstanding(subflow=None)``
    lists the unacknowledged SentRanges; ``to_reinject(subflow)`` what a failed subflow leaves
    to send again; ``next_dsn``, ``data_ack``, ``outstanding_bytes()``."""
    globals()["DsnAllocator"] = impl.DsnAllocator


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_dss", _bind)
_backend_module.register(__name__ + ".sender", "_sender", _bind_sender)
