"""The data-level receive pipeline (RFC 8684 §3.3): subflow segments and mappings in, the
connection's byte stream, DSS checksum verdicts and counters out.

    from mptcp_fast.wire import dss, receiver
    events = []
    budget = receiver.ChecksumBudget(total=1 << 28, per_connection=1 << 26)
    up = receiver.DataReceiver(events, budget, connection=0,
                               verify_checksum=dss.verify_dss_checksum)
    up.start(idsn + 1, dss.ReassemblyQueue(idsn + 1), drain=lambda: None)
    up.checksums = True                       # when the handshake negotiated them
    sub = up.subflow(0)                       # one per subflow carrying this direction
    up.declare(number, sub, dsn, subflow_seq, data_len, data_fin, checksum, truncated=False)
    up.deliver(number, sub, subflow_seq, len(payload), payload)   # or payload None: not captured
    up.acknowledged(data_ack, is64)           # a DATA_ACK for this direction's data
    up.counters(), sub.counters(), events     # StreamCounters, DirectionCounters, Events

    up.watch_gaps(horizon, on_gap)            # a capture's analysis: pass holes it never fills
    up.finish()                               # ... and, at its end, the holes left

A ``DataReceiver`` is one direction of one connection; each subflow's ``SubflowReceiver``
holds that subflow's mappings (``dss.SubflowMappings``' rules) and the DSS checksums still
collecting. Delivered segments are resolved through the mappings into DSN ranges, counted
(new, out of order, duplicate, reinjected = carried again on another subflow than the first),
pushed into the stream's ReassemblyQueue, and checked against their mapping's checksum once
every byte of it was seen; a mapping that contradicts an earlier one, unmapped bytes, a
DATA_FIN that moves and a failed checksum become ``Event``s. Linux's one-byte zero-window
probe (mapped at a DSN already acknowledged, carrying the next byte instead) is counted and
set aside, never placed in the stream. ``ChecksumBudget`` bounds the
payload bytes that checksummed mappings may hold while they collect. The capture analyzer
feeds it from packet columns, the engine from segments. Compiled
(pyx/mptcp_fast/wire/_receiver_c.pyx, cimportable through pyx/mptcp_fast/wire/_receiver_c.pxd)
with a pure twin (_receiver_py.py); the value types above are defined once, in
_receiver_common.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._receiver_common import (DirectionCounters, Event,  # noqa: F401  (exported; defined once there)
                               StreamCounters)

__all__ = ["Event", "DirectionCounters", "StreamCounters", "ChecksumBudget", "DataReceiver"]


if TYPE_CHECKING:    # for type checkers: the pure twin's classes (the compiled ones are alike)
    from ._receiver_py import ChecksumBudget, DataReceiver
else:
    ChecksumBudget = DataReceiver = None


def _bind(impl: Any) -> None:
    # through globals(): to a type checker these names are the pure classes, not variables
    globals().update(ChecksumBudget=impl.ChecksumBudget, DataReceiver=impl.DataReceiver)


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_receiver", _bind)
