"""Type errors a user could make with mptcp_fast, each of which ``mypy --strict`` must report:
tests/test_typing.py checks that mypy finds exactly the errors marked here at the end of their
line (``# error:`` and the error code in brackets), so the types it checks the user script with are real ones and
the check cannot pass by seeing no types at all. Type-checked only, never run.
"""

from __future__ import annotations

from mptcp_fast.analysis import capture
from mptcp_fast.engine import Config, Connection, DataReceived, Endpoint
from mptcp_fast.net import aio
from mptcp_fast.wire import crypto, dss, packet
from mptcp_fast.wire.options import Dss, Option, Timestamps, parse_option


def mistakes(endpoint: Endpoint, conn: Connection) -> None:
    parse_option("1e04")                               # error: [arg-type]
    opt: Option = parse_option(b"\x01")
    print(opt.dsn)                                     # error: [attr-defined]
    dss_option = Dss(dsn=1, subflow_seq=1, data_len=10)
    end: int = dss_option.dsn + 10                     # error: [operator]
    stamp: str = Timestamps(1, 2).tsval                # error: [assignment]
    crypto.key_token("key")                            # error: [arg-type]
    table: crypto.TokenTable[str] = crypto.TokenTable()
    owner: str = table.lookup(1)                       # error: [assignment]
    dss.ReassemblyQueue(1000).push(1000, "text")       # error: [arg-type]
    dss.DsnAllocator("1000")                           # error: [arg-type]
    packet.parse_packet(b"").sport.hex()               # error: [attr-defined]
    endpoint.connect("198.18.0.2:5000", 0.0)           # error: [arg-type]
    conn.send("text")                                  # error: [arg-type]
    timer: float = endpoint.get_timer()                # error: [assignment]
    event = endpoint.next_event()
    if isinstance(event, DataReceived):
        text: str = event.data                         # error: [assignment]
        print(text)
    Config(mss="1460")                                 # error: [arg-type]
    for seg in capture.open_capture("trace.pcap"):
        seg.payload.decode(7)                          # error: [arg-type]
    print(end, stamp, owner, timer)


async def streams() -> None:
    reader, writer = await aio.open_connection("198.18.0.1", 5000)   # error: [call-arg]
    writer.write("hello")                              # error: [arg-type]
    data: str = await reader.read()                    # error: [assignment]
    print(data)
