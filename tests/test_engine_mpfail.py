"""DSS checksums against a middlebox that rewrites payload (RFC 8684 §3.7): the
mapping whose checksum fails is never delivered or DATA_ACKed. With another subflow, the
failing one is reset with MP_FAIL and MP_TCPRST "middlebox interference" and the data comes
again on the other, byte-exact; on the only subflow, MP_FAIL goes both ways and the connection
continues as plain TCP, carrying what the middlebox made of the stream."""

from __future__ import annotations

import hashlib

from enginenet import C0, C1, PORT, S0, drain, options_of, pump, transfer
from mptcp_fast.wire import options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev
from mptcp_fast.sim.apps import pattern
from mptcp_fast.sim.netem import rewrite_payload

MB = 1 << 20


def test_a_rewritten_segment_on_one_of_two_subflows_resets_it_and_loses_nothing(backend):
    def corrupt(net, client, server, made, conn):
        made[(C1, S0)].middlebox = rewrite_payload(nth=5, from_a=True)
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=2 * MB, down=MB // 2, checksums=True, before_run=corrupt)
    run.check_exact(2 * MB, MB // 2)                              # nothing corrupt got through
    c, s = run.up
    assert s.conn.checksum_failures == 1 and run.conn.mp_fail_received == 1
    closed = [e for e in run.client.events if type(e) is ev.SubflowClosed and e.subflow_id == 1]
    assert closed[0].reason == "reset"
    assert closed[0].reset_reason == opt.ResetReason.MIDDLEBOX_INTERFERENCE
    assert run.conn.reinjected_bytes > 0 and run.conn.fallback is None


def test_a_rewritten_segment_on_the_only_subflow_falls_back_with_mp_fail(backend):
    def corrupt(net, client, server, made, conn):
        made[(C0, S0)].middlebox = rewrite_payload(nth=20, from_a=True)
    size = MB
    # after the fallback the path's rewritten byte is stream data (RFC 8684 §3.7): the one
    # run where the stream invariant does not hold, on purpose
    run = transfer({(C0, S0): dict(rate=20e6, delay=0.010)}, up=size, client_addresses=(C0,),
                   checksums=True, before_run=corrupt, invariant=False)
    c, s = run.up
    assert s.received == size and s.eof and c.terminated == s.terminated == "closed"
    # what arrived is the stream as the middlebox rewrote it: one byte differs
    stream = (pattern(1) * 2)[:size]
    assert s.received_hash.hexdigest() != hashlib.sha256(stream).hexdigest()
    assert s.conn.checksum_failures == 1 and run.conn.mp_fail_received == 1
    assert s.conn.mp_fail_received == 1                           # the answer came back
    fell = {type(e) for app in (run.client, run.server) for e in app.events}
    assert ev.FellBackToTcp in fell
    assert run.conn.fallback.startswith("MP_FAIL from the peer")
    assert s.conn.fallback.startswith("DSS checksum failure at DSN")


def _checksummed_pair():
    """Two endpoints with DSS checksums, driven packet by packet, and the client's connection
    opened at time 0: (client, server, connection). Their windows hold a whole transfer
    (the tests read only at the end; a window grows only as the application reads)."""
    config = Config(checksums=True, time_wait=0.1, initial_receive_window=1 << 20)
    client = Endpoint([C0], config)
    server = Endpoint([S0], config)
    server.listen(PORT)
    return client, server, client.connect((S0, PORT), 0.0)


def test_the_rewritten_byte_is_exactly_what_arrives_after_fallback(backend):
    """Driven packet by packet: the receiver gets the sent stream with that one byte inverted."""
    client, server, conn = _checksummed_pair()
    data = bytes(range(256)) * 64
    conn.send(data, end_stream=True)
    box = rewrite_payload(nth=3, offset=7)
    changed = []

    def mutate(packet, sender):
        if sender is client:
            out = box(packet, True)
            if out != packet:
                changed.append(pk.parse_packet(packet).seq)
            return out
        return packet
    seen = pump(client, server, until=5.0, mutate=mutate)
    got = b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
    assert len(got) == len(data) and len(changed) == 1
    diff = [i for i in range(len(data)) if got[i] != data[i]]
    assert len(diff) == 1 and got[diff[0]] == data[diff[0]] ^ 0xFF
    fails = [o for s, p in seen for o in options_of(p) if type(o) is opt.MpFail]
    assert {id(s) for s, p in seen for o in options_of(p) if type(o) is opt.MpFail} == \
        {id(client), id(server)}                                  # MP_FAIL both ways
    assert len({o.dsn for o in fails}) == 1


def test_mp_fail_while_receiving_checksummed_data_loses_none_of_it(backend):
    """Both directions at once on the only subflow, the client's data rewritten; the server's
    data segments after its second are held back until its MP_FAIL has reached the client, so
    the client falls back with the server's first mapping half received: those bytes sit in
    the checksum hold, already acknowledged by TCP and never to be sent again. Falling back
    delivers them, and the server -> client stream arrives whole (found against the Linux
    kernel, where it stalled). The client's answering MP_FAIL rides a pure ACK, as Linux sends
    it; the infinite mapping is on its next data segment."""
    client, server, conn = _checksummed_pair()
    up, down = bytes(range(256)) * 1024, bytes(range(255, -1, -1)) * 1024
    conn.send(up, end_stream=True)
    box = rewrite_payload(nth=4, offset=7)
    held, state = [], {"data": 0, "failed": False}

    def mutate(packet, sender):
        if sender is client:
            if state["failed"]:                    # the MP_FAIL went through: release
                for late in held:
                    client.receive_packet(late, 0.6)
                held.clear()
            return box(packet, True)
        if any(type(o) is opt.MpFail for o in options_of(packet)):
            state["failed"] = True
            return packet
        if pk.parse_packet(packet).payload(packet) and not state["failed"]:
            state["data"] += 1
            if state["data"] > 1:
                held.append(packet)
                return None
        return packet

    seen = pump(client, server, until=0.02, mutate=mutate)       # the handshake
    (established,) = [e for e in drain(server) if type(e) is ev.ConnectionEstablished]
    server.connection(established.connection).send(down, end_stream=True)
    seen += pump(client, server, now=0.5, until=5.0, mutate=mutate)
    got = b"".join(e.data for e in drain(client) if type(e) is ev.DataReceived)
    assert state["failed"] and state["data"] > 2
    assert conn.fallback.startswith("MP_FAIL from the peer")
    assert got == down
    answers = [p for sender, p in seen if sender is client
               and any(type(o) is opt.MpFail for o in options_of(p))]
    assert answers and all(not pk.parse_packet(p).payload(p) for p in answers)
    infinite = [o for sender, p in seen if sender is client for o in options_of(p)
                if type(o) is opt.Dss and o.dsn is not None and o.data_len == 0]
    assert len(infinite) == 1


def test_a_data_fin_sent_before_the_fallback_goes_again_as_the_tcp_fin(backend):
    """The client sends its data and DATA_FIN at once; the middlebox
    rewrites the data, the server's checksum fails and it falls back with MP_FAIL, so it never
    reads the DATA_FIN (a DSS on a pure ACK). The client falls back on that MP_FAIL with its
    DATA_FIN sent and not acknowledged: after fallback the TCP FIN is the DATA_FIN, so it must
    go out as one, and the server's application gets EndOfStream."""
    client, server, conn = _checksummed_pair()
    data = bytes(range(256)) * 4
    conn.send(data, end_stream=True)
    box = rewrite_payload(nth=1, offset=7)
    seen = pump(client, server, until=10.0,
                mutate=lambda packet, sender: box(packet, True) if sender is client else packet)
    first_fail = next(i for i, (s, p) in enumerate(seen)
                      if s is server and any(type(o) is opt.MpFail for o in options_of(p)))
    assert any(type(o) is opt.Dss and o.data_fin for s, p in seen[:first_fail] if s is client
               for o in options_of(p))                          # the DATA_FIN went out first
    events = drain(server)
    got = b"".join(e.data for e in events if type(e) is ev.DataReceived)
    assert len(got) == len(data)
    assert [type(e) for e in events if type(e) is ev.EndOfStream] == [ev.EndOfStream]
    assert conn.fallback.startswith("MP_FAIL from the peer") and conn.fin_acked
    fins = [p for s, p in seen[first_fail:] if s is client and pk.parse_packet(p).flags & pk.FIN]
    assert fins and not any(isinstance(o, opt._MptcpOption) for p in fins for o in options_of(p))
