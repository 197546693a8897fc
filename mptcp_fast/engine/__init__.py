"""The sans-IO MPTCP engine (issue #11), after aioquic's QuicConnection: no sockets, clocks or
threads inside; whole IP packets in and out; time passed in by the caller.

    from mptcp_fast.engine import Endpoint, Config
    ep = Endpoint(["198.18.0.1", "198.18.1.1"], Config())
    conn = ep.connect(("198.18.0.2", 5000), now)
    ep.receive_packet(data, now); ep.packets_to_send(now); ep.get_timer(); ep.handle_timer(now)
    ep.next_event()          # ConnectionEstablished, SubflowEstablished, DataReceived, ...

The layers, one module each: ``endpoint`` (addresses, listeners, demultiplexing, RSTs),
``connection`` (MPTCP: MP_CAPABLE, MP_JOIN, DSS, data ACKs, DATA_FIN, reinjection),
``subflow`` (one TCP connection: handshake, SACK, loss recovery, RTO, delayed ACKs, FIN,
TIME-WAIT), ``segment`` (reading a received packet), ``cc`` (Reno, CUBIC, the coupled LIA of
RFC 6356), ``scheduler`` (lowest RTT, round-robin, redundant), ``rtt`` (RFC 6298), ``isn``
(RFC 6528), ``events`` (what the user reads), ``config`` and ``apps`` (a bulk-transfer
application for the emulated network, ``mptcp_fast.netem``).
"""

from .config import Config
from .connection import Connection
from .endpoint import Endpoint
from .events import (ConnectionEstablished, ConnectionTerminated, DataReceived, EndOfStream,
                     Event, FellBackToTcp, SubflowClosed, SubflowEstablished, SubflowPriority)

__all__ = ["Config", "Connection", "ConnectionEstablished", "ConnectionTerminated",
           "DataReceived", "EndOfStream", "Endpoint", "Event", "FellBackToTcp", "SubflowClosed",
           "SubflowEstablished", "SubflowPriority"]
