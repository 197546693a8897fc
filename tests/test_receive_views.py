"""A received segment's payload left uncopied (``Endpoint.receive_views``).

With the flag set, the payload of a segment of 8 KiB or more (an offloaded segment's) goes
from the packet to the application as a read-only view of the packet: the segment reader
makes it a view, the receive pipeline queues it whole, and ``DataReceived.data`` is that
view. Only a packet whose bytes can never change is viewed (bytes, or a read-only view of
bytes): a bytearray the host reuses for the next packet is copied, as every payload is
without the flag. Both backends, the same course.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from enginenet import C0, C1, PORT, S0, make
from mptcp_fast.engine import Config, Endpoint, RandomSource, events as ev
from mptcp_fast.wire import segment

A, B = b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02"


def _data_packet(size: int) -> bytes:
    payload = bytes(i * 7 % 251 for i in range(size))
    return segment.data_packet(A, B, 40000, PORT, 1000, 2000, 0x18, 512, 11, 22, 3000,
                               4000, 1, size, None, payload, 0, size)


def _shares_memory(view, data) -> bool:
    """``view`` is a memoryview over the very bytes object ``data``."""
    return type(view) is memoryview and view.obj is data


def test_read_views_a_large_payload_of_bytes(backend):
    read = segment.reader()
    packet = _data_packet(8192)
    seg = read(packet, 1, False, True)
    assert _shares_memory(seg.payload, packet) and seg.payload.readonly
    assert bytes(seg.payload) == packet[-8192:]
    # the same through a read-only view of the bytes, cut as a TUN device's read is
    framed = b"\x00" * 10 + packet
    seg = read(memoryview(framed)[10:], 1, False, True)
    assert _shares_memory(seg.payload, framed) and bytes(seg.payload) == packet[-8192:]


def test_read_copies_a_small_payload_or_without_the_flag(backend):
    read = segment.reader()
    small, large = _data_packet(8191), _data_packet(8192)
    assert type(read(small, 1, False, True).payload) is bytes
    assert type(read(large, 1, False, False).payload) is bytes
    assert type(read(large, 1).payload) is bytes
    assert read(small, 1, False, True).payload == small[-8191:]


def test_read_copies_a_payload_whose_buffer_can_change(backend):
    """A bytearray (or a view of one, even a read-only one) may be rewritten by the host as
    soon as the call returns: its payload is a copy, and rewriting it changes nothing."""
    read = segment.reader()
    packet = _data_packet(16384)
    for data in (bytearray(packet), memoryview(bytearray(packet)),
                 memoryview(bytearray(packet)).toreadonly()):
        seg = read(data, 1, False, True)
        assert type(seg.payload) is bytes, type(data)
        buffer = data.obj if type(data) is memoryview else data
        buffer[-16384:] = b"\xff" * 16384
        assert seg.payload == packet[-16384:]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 20000), flag=st.booleans(), kind=st.sampled_from(
    ["bytes", "view", "bytearray"]))
def test_read_gives_the_same_bytes_either_way(size, flag, kind):
    """Whatever the buffer and the flag, the payload holds the segment's bytes, and it is a
    view exactly when the flag is set, the payload is 8 KiB or more and the buffer is
    immutable; the compiled and pure readers agree (the active one and the pure one)."""
    from mptcp_fast import _backend
    packet = _data_packet(size)
    data = {"bytes": packet, "view": memoryview(b"\x00" * 10 + packet)[10:],
            "bytearray": bytearray(packet)}[kind]
    results = []
    for name in (("cython", "python") if _backend.COMPILED_AVAILABLE else ("python",)):
        with _backend.use(name):
            seg = segment.reader()(data, 1, False, flag)
        assert bytes(seg.payload) == packet[len(packet) - size:]
        results.append(type(seg.payload))
    viewed = flag and size >= 8192 and kind != "bytearray"
    assert results == [memoryview if viewed else bytes] * len(results)


PATHS = {(C0, S0): dict(rate=10e9, delay=0.001), (C1, S0): dict(rate=10e9, delay=0.001)}


def _transfer(views: bool, size: int = 4 << 20, max_data: int | None = None):
    """An offloaded transfer (64 KiB segments) from the client to the server's endpoint,
    read by the test itself (``max_data``: at most that much per event, read per
    connection): the server's events' data, and the SHA-256 of every packet sent, in order."""
    import hashlib
    config = Config(offload=True, delayed_ack=0.04, time_wait=0.5)
    # seeded keys, ISNs and ports: every run is the same to the bit
    client = Endpoint([C0, C1], config, random=RandomSource.seeded(1))
    server = Endpoint([S0], config, random=RandomSource.seeded(2))
    server.listen(PORT)
    server.receive_views = views
    conn = client.connect((S0, PORT), 0.0)
    source = bytes(i * 13 % 256 for i in range(size))
    sent, datas, now = 0, [], 0.0
    wire = hashlib.sha256()
    while now < 5.0:
        if sent < size and conn.send_space > 0:
            sent += conn.send(source[sent:sent + min(conn.send_space, 1 << 20)])
            if sent == size:
                conn.close()
        for src, dst in ((client, server), (server, client)):
            for packet in src.packets_to_send(now):
                wire.update(packet)
                dst.receive_packet(packet, now)
        for server_conn in server.connections_with_events():
            while (event := server_conn.next_event(*([max_data] if max_data else []))) \
                    is not None:
                if type(event) is ev.DataReceived:
                    datas.append(event.data)
                elif type(event) is ev.EndOfStream:
                    return source, datas, wire.hexdigest()
        while client.next_event() is not None:
            pass
        now += 0.0005
        for ep in (client, server):
            if ep.get_timer() is not None and ep.get_timer() <= now:
                ep.handle_timer(now)
    raise AssertionError("the transfer did not end")


def test_the_application_gets_large_segments_as_views_of_the_packets(backend):
    source, datas, wire = _transfer(True)
    assert b"".join(datas) == source
    views = [d for d in datas if type(d) is memoryview]
    # most of the stream came in 64 KiB segments, each its own event, uncopied
    assert sum(len(v) for v in views) > len(source) // 2
    assert all(v.readonly and type(v.obj) is bytes and len(v) >= 8192 for v in views)
    assert all(type(d) is bytes for d in datas if type(d) is not memoryview)
    # the same course without the flag: the very same packets, the same cuts, all bytes
    source_b, datas_b, wire_b = _transfer(False)
    assert wire_b == wire
    assert [len(d) for d in datas_b] == [len(d) for d in datas]
    assert all(type(d) is bytes for d in datas_b)


def test_without_the_flag_data_is_bytes_even_in_cuts_of_large_pieces(backend):
    """Read in events smaller than a segment, the queue cuts its pieces (views of what it
    holds): without the flag each event is still bytes; with it, the cuts may be views."""
    source, datas, _ = _transfer(False, 2 << 20, max_data=20000)
    assert b"".join(datas) == source and max(len(d) for d in datas) <= 20000
    assert all(type(d) is bytes for d in datas)
    source, datas_v, _ = _transfer(True, 2 << 20, max_data=20000)
    assert b"".join(datas_v) == source
    assert [len(d) for d in datas_v] == [len(d) for d in datas]


def test_both_backends_take_the_same_course_with_the_flag():
    """The same run on the compiled and the pure engine: the same packets, the same event
    cuts and the same kinds of data (view or bytes) for each event."""
    from mptcp_fast import _backend
    from conftest import require
    require("compiled")
    runs = []
    for name in ("cython", "python"):
        with _backend.use(name):
            source, datas, wire = _transfer(True, 2 << 20)
        runs.append((wire, [(len(d), type(d).__name__) for d in datas]))
    assert runs[0] == runs[1]


def test_a_kept_cut_of_a_view_holds_at_most_twice_its_size(backend):
    """A segment that overlaps what was received carries few new bytes: the rest of its
    view is copied when kept, so a peer's overlapping 64 KiB segments cannot make each
    queued byte hold a whole packet (the receive window bounds the memory held)."""
    from mptcp_fast.wire import dss
    queue = dss.ReassemblyQueue(0, window=1 << 20)
    packet = bytes(range(256)) * 256                      # 64 KiB under the views
    assert queue.push(0, memoryview(packet)[:1000]) == 1000    # a small view: copied
    queue.push(0, memoryview(packet)[:1001])             # one new byte at 1000: copied
    queue.push(100, memoryview(packet)[100:40000])       # 38,999 new bytes: kept as a view
    kept = list(queue.read_pieces())
    assert b"".join(bytes(p) for p in kept) == packet[:40000]
    assert [type(p) for p in kept] == [bytes, bytes, memoryview]
    for piece in kept:
        if type(piece) is memoryview:
            assert 2 * len(piece) >= len(piece.obj), (len(piece), len(piece.obj))


def test_the_queue_copies_a_read_only_view_of_a_buffer_that_may_change(backend):
    """Only views of bytes are kept as they are: a read-only view of a bytearray may still
    change through the bytearray, so the queue copies it."""
    from mptcp_fast.wire import dss
    queue = dss.ReassemblyQueue(0, window=1 << 20)
    buffer = bytearray(b"a" * 10000)
    queue.push(0, memoryview(buffer).toreadonly())
    buffer[:] = b"b" * 10000
    assert queue.read() == b"a" * 10000


def test_the_emulator_s_bulk_app_takes_views_and_the_streams_stay_exact(backend):
    """BulkApp sets the flag (it hashes and counts data); an offloaded transfer over two
    paths still arrives byte-exact."""
    net, client, server, made = make(PATHS, up=8 << 20, offload=True)
    assert client.endpoint.receive_views and server.endpoint.receive_views
    client.open((S0, PORT), 0.0)
    net.run(until=30.0)
    c = next(iter(client.transfers.values()))
    s = next(iter(server.transfers.values()))
    assert s.received == 8 << 20 and s.eof
    assert s.received_hash.hexdigest() == c.sent_hash.hexdigest()
