"""Properties of ``Endpoint.receive_packet`` : on any bytes, and on any
MPTCP option list in an otherwise acceptable segment of an established connection (its 4-tuple,
a sequence number in the receive window, an acceptable ACK: RFC 5961 §5), it never raises, and
every per-connection structure stays within its stated bound:

==========================  ==========================================================
anomaly list                at most ANOMALIES_KEPT (the rest only counted)
checksum holds              at most HELD_PER_SUBFLOW mappings per subflow, and their bytes
                            within the receive window (never a declared length up front)
receiver's pending list     at most HELD_PER_SUBFLOW checksummed mappings per subflow
mapping store               a mapping is stored only for subflow bytes within the subflow's
                            receive window and DSNs within the data-level window (RFC 8684
                            §3.3.1, §3.3.4); outside, it is ignored
out-of-order data           at most MAX_OOO_BLOCKS blocks per subflow, and the data-level
                            queue within the receive window
announcements               ADD_ADDR echoes owed at most 16; no address without a valid HMAC
                            (RFC 8684 §3.4.1)
==========================  ==========================================================

The connection lives on across examples (rebuilt once it ends or falls back), so growth over
many segments shows. The default run draws 100 examples per test and backend; ``pytest -m fuzz`` and
MPTCP_FAST_FUZZ_EXAMPLES draw more.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginenet import C0, C1, PORT, S0, drain, pump
from mptcp_fast import _backend
from mptcp_fast.wire import dss, options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.errors import UnmappedData
from strategies import mptcp_option, u16

ANOMALIES_KEPT = 256
HELD_PER_SUBFLOW = 256
MAX_OOO_BLOCKS = 256
ECHOES_OWED = 16
WINDOW = 1 << 20
MASK32, MASK64 = 0xFFFFFFFF, (1 << 64) - 1
LONG = int(os.environ.get("MPTCP_FAST_FUZZ_EXAMPLES", "0"))
quick = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                 report_multiple_bugs=False,
                 suppress_health_check=list(HealthCheck))
long_run = settings(max_examples=LONG or 5000, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# -- the connection under test: one per (backend, checksums), kept across examples

def live_pair(checksums: bool):
    """An established connection with two subflows and data moved both ways."""
    config = Config(time_wait=0.1, checksums=checksums, receive_window=WINDOW)
    client = Endpoint([C0, C1], config)
    server = Endpoint([S0], config)
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"a" * 3000)
    pump(client, server, 0.0)
    server_conn = next(iter(server.connections.values()))
    server_conn.send(b"b" * 2000)
    pump(client, server, 1.0)
    drain(client), drain(server)
    assert len(conn.subflows) == 2 and len(server_conn.subflows) == 2
    return client, server, conn, server_conn


_PAIRS = {}


def pair(checksums: bool):
    key = (_backend.active(), checksums)
    found = _PAIRS.get(key)
    if found is None or found[3].terminated or found[3].fallback or found[2].terminated:
        found = _PAIRS[key] = live_pair(checksums)
    return found


# -- segments

def acceptable(client_sf, server_sf, offset: int, ack_back: int, options: bytes,
               payload: bytes) -> bytes:
    """A segment from the client's side of ``client_sf`` to the server: sequence number
    ``offset`` bytes into the server's receive window, ACK ``ack_back`` bytes behind what the
    server sent (both acceptable, RFC 5961 §5)."""
    seq = (server_sf.irs + server_sf.rcv_nxt + offset) & MASK32
    ack = (server_sf.iss + max(server_sf.snd_una, server_sf.snd_nxt - ack_back)) & MASK32
    return pk.build_packet(client_sf.local, client_sf.remote, client_sf.lport, client_sf.rport,
                           seq, ack, pk.ACK, 65535, options=options, payload=payload)


def option_area(options) -> bytes:
    """As many of ``options`` as fit the 40 bytes of TCP option space, encoded."""
    kept, area = [], b""
    for o in options:
        try:
            trial = opt.encode_tcp_options(kept + [o])
        except (ValueError, OverflowError):
            continue
        if len(trial) <= 40:
            kept.append(o)
            area = trial
    return area


@st.composite
def window_dss(draw):
    """A DSS mapping near the windows (where a mapping matters): DSN and relative subflow
    sequence number a signed offset from the current ones, or anything."""
    return ("near", draw(st.integers(-(1 << 22), 1 << 23)), draw(st.integers(-(1 << 22), 1 << 23)),
            draw(st.integers(1, 0xFFFF)), draw(st.none() | u16), draw(st.booleans()),
            draw(st.booleans()))


def concrete(option, server_conn, server_sf):
    """A drawn option, with a "near" DSS made concrete against the connection's state."""
    if not (type(option) is tuple and option and option[0] == "near"):
        return option
    _, dsn_off, ssn_off, length, checksum, fin, dsn64 = option
    dsn = (server_conn.queue.data_ack + dsn_off) & MASK64
    ssn = (server_sf.rcv_nxt + ssn_off) & MASK32
    return opt.Dss(None, False, dsn if dsn64 else dsn & MASK32, dsn64, ssn, length, checksum, fin)


segments = st.lists(st.tuples(
    st.lists(st.one_of(mptcp_option, window_dss()), min_size=1, max_size=4),
    st.integers(0, WINDOW - 1),                      # sequence offset into the window
    st.integers(0, 2000),                            # ACK this far behind snd_nxt
    st.sampled_from((0, 1, 100, 1400)),              # payload length
    st.booleans()), min_size=1, max_size=6)          # on the initial subflow or the other


# -- the bounds

def held_bytes(held) -> int:
    """The bytes a held checksummed mapping keeps, whatever its layout: its byte buffers, or
    the byte runs in its lists of pieces."""
    total = 0
    for name in getattr(type(held), "__slots__", ()):
        value = getattr(held, name, None)
        if isinstance(value, (bytes, bytearray, memoryview)):
            total += len(value)
        elif isinstance(value, list):
            total += sum(len(v) for item in value for v in (item if isinstance(item, tuple)
                                                            else (item,))
                         if isinstance(v, (bytes, bytearray, memoryview)))
    return total


def check_bounds(conn, before) -> None:
    """Every structure of the receiving connection within its bound (the module text)."""
    assert len(conn.anomalies) <= ANOMALIES_KEPT, f"{len(conn.anomalies)} anomalies kept"
    held = getattr(conn.fb.hold, "_held", {})
    for sid, mappings in held.items():
        assert len(mappings) <= HELD_PER_SUBFLOW, f"{len(mappings)} mappings held on {sid}"
        allocated = sum(held_bytes(h) for h in mappings)
        assert allocated <= 2 * WINDOW, f"{allocated:,} bytes allocated for checksum holds"
    for side in conn.receiver_side.values():
        pending = getattr(side, "pending", None)      # the pure twin's; compiled: a C field
        if pending is not None:
            assert len(pending) <= HELD_PER_SUBFLOW, f"{len(pending)} checksums pending"
    for sf in conn.all_subflows:
        assert len(sf.ooo) <= MAX_OOO_BLOCKS, f"{len(sf.ooo)} out-of-order blocks"
    assert conn.queue.queued_bytes <= WINDOW, f"{conn.queue.queued_bytes:,} bytes queued"
    assert len(conn.pm.pending_echo) <= ECHOES_OWED
    assert conn.pm.remote_addresses == before, "an address without a valid HMAC was kept"


def check_mapping_ignored_outside_windows(conn, sf, mapping, rcv_nxt: int, data_ack: int):
    """RFC 8684 §3.3.1/§3.3.4: a mapping none of whose subflow bytes lie in the subflow's
    receive window, or none of whose DSNs lie in the data-level window, is ignored, not
    stored. Probed through the receiver: a stored mapping resolves its first byte."""
    length = mapping.data_len
    if length in (None, 0) or (mapping.data_fin and length == 1):
        return
    start = rcv_nxt + ((mapping.subflow_seq - rcv_nxt + (1 << 31)) & MASK32) - (1 << 31)
    dsn = mapping.dsn if mapping.dsn64 else dss.expand_seq(data_ack, mapping.dsn)
    in_subflow_window = start + length > rcv_nxt and start < rcv_nxt + WINDOW
    ahead = (dsn - data_ack) & MASK64
    in_data_window = ahead < WINDOW or ahead > MASK64 - length + 1    # overlaps [ack, ack+W)
    if in_subflow_window and in_data_window:
        return
    side = conn.receiver_side.get(sf.sid)
    if side is None or start < 0:
        return
    try:
        ranges = side.resolve(start, 1)
    except UnmappedData:
        return
    except (OverflowError, ValueError):               # the probe cannot even ask: stored
        ranges = [(dsn, 1)]                           # as an out-of-range value (it once raised)
    assert not any(d == dsn for d, _ in ranges), \
        f"mapping {mapping} stored outside the window (rcv_nxt {rcv_nxt}, data_ack {data_ack})"


# -- the properties

@pytest.mark.parametrize("checksums", [False, True], ids=["plain", "checksums"])
@quick
@given(data=st.binary(max_size=200))
def test_any_bytes_never_raise(backend, checksums, data):
    client, server, conn, server_conn = pair(checksums)
    server.receive_packet(data, 2.0)
    check_bounds(server_conn, dict(server_conn.pm.remote_addresses))


def play_segments(checksums: bool, drawn) -> None:
    client, server, conn, server_conn = pair(checksums)
    addresses = dict(server_conn.pm.remote_addresses)
    for options, offset, ack_back, size, other in drawn:
        if server_conn.terminated or server_conn.fallback:
            break
        csf = conn.subflows[1 if other and len(conn.subflows) > 1 else 0]
        ssf = next((s for s in server_conn.subflows if s.rport == csf.lport), None)
        if ssf is None:
            break
        options = [concrete(o, server_conn, ssf) for o in options]
        area = option_area(options)
        rcv_nxt, data_ack = ssf.rcv_nxt, server_conn.queue.data_ack
        payload = bytes([0x5A]) * size
        server.receive_packet(acceptable(csf, ssf, offset, ack_back, area, payload), 2.0)
        server.packets_to_send(2.0)
        drain(server)
        check_bounds(server_conn, addresses)
        for o in opt.parse_tcp_options(area):
            if type(o) is opt.Dss and o.dsn is not None:
                check_mapping_ignored_outside_windows(server_conn, ssf, o, rcv_nxt, data_ack)


@pytest.mark.parametrize("checksums", [False, True], ids=["plain", "checksums"])
@quick
@given(drawn=segments)
def test_any_options_in_an_acceptable_segment_keep_state_bounded(backend, checksums, drawn):
    play_segments(checksums, drawn)


@pytest.mark.fuzz
@pytest.mark.parametrize("checksums", [False, True], ids=["plain", "checksums"])
@long_run
@given(drawn=segments)
def test_fuzz_options_in_acceptable_segments(backend, checksums, drawn):
    play_segments(checksums, drawn)
