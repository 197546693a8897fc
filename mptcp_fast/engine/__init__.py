"""The sans-IO MPTCP engine, after aioquic's QuicConnection: no sockets, clocks or
threads inside; whole IP packets in and out; time passed in by the caller.

    from mptcp_fast.engine import Endpoint, Config
    ep = Endpoint(["198.18.0.1", "198.18.1.1"], Config())
    conn = ep.connect(("198.18.0.2", 5000), now)
    ep.receive_packet(data, now); ep.packets_to_send(now); ep.get_timer(); ep.handle_timer(now)
    ep.next_event()          # ConnectionEstablished, SubflowEstablished, DataReceived, ...

The layers, one module each: ``endpoint`` (addresses, listeners, demultiplexing, RSTs, SYN
cookies from ``cookies``, TCP Fast Open from ``fastopen``), ``connection`` (MPTCP: MP_CAPABLE, MP_JOIN, DSS, data ACKs,
DATA_FIN, reinjection, MP_FASTCLOSE) with its components ``pathmanager`` (joins, ADD_ADDR,
REMOVE_ADDR, MP_PRIO) and ``fallback`` (fallback to TCP, DSS checksums, MP_FAIL),
``subflow`` (one TCP connection: handshake, SACK, loss recovery, RTO, delayed ACKs, FIN,
TIME-WAIT, keepalives), ``segment`` and ``wire`` (reading and writing packets: compiled
twins for the common established segments), ``integrity`` (DSS checksums held until
verified), ``cc`` (Reno, CUBIC, and the coupled LIA, OLIA and BALIA), ``scheduler`` (lowest
RTT, round-robin, redundant, ECF), ``rtt`` (RFC 6298), ``isn`` (RFC 6528), ``randomness``
(the one source of random numbers: the OS CSPRNG, or seeded for tests), ``events`` (what
the user reads), ``config`` (including the protocol profiles v1, v0, v0+add_addr2) and
``apps`` (a bulk-transfer application for the emulated network, ``mptcp_fast.sim.netem``).
"""

from .config import Config
from .connection import Connection
from .endpoint import Endpoint
from .events import (CloseReason, ConnectionEstablished, ConnectionTerminated, DataReceived,
                     EndOfStream, Event, FellBackToTcp, SubflowClosed, SubflowEstablished,
                     SubflowPriority)
from .randomness import RandomSource

__all__ = ["CloseReason", "Config", "Connection", "ConnectionEstablished", "ConnectionTerminated",
           "DataReceived", "EndOfStream", "Endpoint", "Event", "FellBackToTcp", "RandomSource",
           "SubflowClosed", "SubflowEstablished", "SubflowPriority"]
